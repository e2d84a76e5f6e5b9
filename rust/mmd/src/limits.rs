//! The memory policy, in one place: every buffer whose size follows from a number the caller
//! chooses (bins, groups, permutations, grid points) is checked before anything is allocated.
//! One computation may hold at most a quarter of the machine's physical memory (read with
//! `sysconf`) in such buffers; a request for more is refused with the sizes that ask for it and the
//! bytes it would need. Buffers proportional to the input's rows are not checked: the input holds
//! as much already.

use crate::error::{MmdError, Result};
use std::sync::OnceLock;

/// One computation's size-driven buffers may use physical memory / FRACTION.
const FRACTION: u64 = 4;
/// Assumed when the operating system does not say.
const FALLBACK_MEMORY: u64 = 16 << 30;

/// Bytes of physical memory of this machine.
pub fn physical_memory() -> u64 {
    static MEMORY: OnceLock<u64> = OnceLock::new();
    *MEMORY.get_or_init(|| {
        #[cfg(unix)]
        {
            // SAFETY: sysconf only reads system configuration values.
            let (pages, page) = unsafe {
                (
                    libc::sysconf(libc::_SC_PHYS_PAGES),
                    libc::sysconf(libc::_SC_PAGESIZE),
                )
            };
            if pages > 0 && page > 0 {
                return (pages as u64).saturating_mul(page as u64);
            }
        }
        FALLBACK_MEMORY
    })
}

/// The most bytes one computation may allocate in size-driven buffers.
pub fn memory_limit() -> u64 {
    physical_memory() / FRACTION
}

/// Bytes of an entry: every size-driven buffer holds f64 or u64.
const ENTRY_BYTES: u128 = 8;

/// Ok when `copies` buffers of `dims` entries fit the policy; else `MmdError::TooLarge` saying
/// that `why` (the sizes that ask, e.g. "num_bins = 100000 with reduction='none'") needs them and
/// how many bytes they take. `what` names a buffer ("matrix").
pub fn check(why: &dyn Fn() -> String, what: &str, dims: &[usize], copies: usize) -> Result<()> {
    check_against(memory_limit(), why, what, dims, copies)
}

/// Bytes of `copies` buffers of `dims` entries (saturating: sizes can overflow any integer).
fn bytes(dims: &[usize], copies: usize) -> u128 {
    dims.iter()
        .fold(ENTRY_BYTES.saturating_mul(copies as u128), |total, &d| {
            total.saturating_mul(d as u128)
        })
}

fn check_against(
    limit: u64,
    why: &dyn Fn() -> String,
    what: &str,
    dims: &[usize],
    copies: usize,
) -> Result<()> {
    let needed = bytes(dims, copies);
    if needed <= u128::from(limit) {
        return Ok(());
    }
    let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let buffers = match copies {
        1 => format!("a {} {what}", dims.join(" x ")),
        n => format!("{n} x {} {what}", dims.join(" x ")),
    };
    Err(MmdError::TooLarge(format!(
        "{} needs {buffers} ({}), more than the {} one computation may use (a quarter of the {} of \
         physical memory)",
        why(),
        human(needed),
        human(u128::from(limit)),
        human(u128::from(physical_memory())),
    )))
}

/// Bytes in decimal units ("80.0 GB").
pub fn human(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    for unit in UNITS {
        if value < 1000.0 || unit == "PB" {
            return if unit == "bytes" {
                format!("{bytes} bytes")
            } else if value < 1e6 {
                format!("{value:.1} {unit}")
            } else {
                format!("{value:.1e} {unit}")
            };
        }
        value /= 1000.0;
    }
    unreachable!("the last unit returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_exceeds_the_limit_naming_sizes_and_bytes() {
        let why = || "num_bins = 100000 with reduction='none'".to_string();
        let dims = [1, 100_000, 100_000];
        assert_eq!(bytes(&dims, 1), 80_000_000_000);
        let message = check_against(1 << 30, &why, "matrix", &dims, 1)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "num_bins = 100000 with reduction='none' needs a 1 x 100000 x 100000 matrix \
                 (80.0 GB), more than the 1.1 GB one computation may use"
            ),
            "{message}"
        );
        assert!(check_against(80_000_000_000, &why, "matrix", &dims, 1).is_ok());
        // Sizes beyond any integer saturate instead of wrapping around.
        let huge = [usize::MAX, usize::MAX, usize::MAX];
        assert_eq!(bytes(&huge, 3), u128::MAX);
        assert!(check_against(u64::MAX, &why, "matrix", &huge, 1).is_err());
        assert_eq!(human(999), "999 bytes");
        assert_eq!(human(1_500), "1.5 kB");
        assert!(physical_memory() > 0 && memory_limit() < physical_memory());
    }
}
