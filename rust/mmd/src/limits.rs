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

/// A buffer (or `copies` buffers) of `dims` entries of `entry_bytes` each, asked for by `why`.
pub struct Request<'a> {
    /// The sizes that ask for it, e.g. "num_bins = 100000 with reduction='none'".
    pub why: &'a dyn Fn() -> String,
    /// What it is, e.g. "matrix".
    pub what: &'a str,
    pub dims: &'a [usize],
    pub entry_bytes: usize,
    pub copies: usize,
}

impl Request<'_> {
    /// Bytes needed (saturating: sizes can overflow any integer).
    pub fn bytes(&self) -> u128 {
        self.dims.iter().fold(
            (self.entry_bytes as u128).saturating_mul(self.copies as u128),
            |total, &d| total.saturating_mul(d as u128),
        )
    }

    /// Ok when the request fits the policy's limit.
    pub fn check(&self) -> Result<()> {
        self.check_against(memory_limit())
    }

    fn check_against(&self, limit: u64) -> Result<()> {
        let bytes = self.bytes();
        if bytes <= u128::from(limit) {
            return Ok(());
        }
        let dims: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
        let what = match self.copies {
            1 => format!("a {} {}", dims.join(" x "), self.what),
            n => format!("{n} x {} {}", dims.join(" x "), self.what),
        };
        Err(MmdError::TooLarge(format!(
            "{} needs {what} ({}), more than the {} one computation may use (a quarter of the {} of \
             physical memory)",
            (self.why)(),
            human(bytes),
            human(u128::from(limit)),
            human(u128::from(physical_memory())),
        )))
    }
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
        let request = Request {
            why: &why,
            what: "matrix",
            dims: &[1, 100_000, 100_000],
            entry_bytes: 8,
            copies: 1,
        };
        assert_eq!(request.bytes(), 80_000_000_000);
        let message = request.check_against(1 << 30).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "num_bins = 100000 with reduction='none' needs a 1 x 100000 x 100000 matrix \
                 (80.0 GB), more than the 1.1 GB one computation may use"
            ),
            "{message}"
        );
        assert!(request.check_against(80_000_000_000).is_ok());
        // Sizes beyond any integer saturate instead of wrapping around.
        let huge = Request {
            dims: &[usize::MAX, usize::MAX, usize::MAX],
            ..request
        };
        assert_eq!(huge.bytes(), u128::MAX);
        assert!(huge.check_against(u64::MAX).is_err());
        assert_eq!(human(999), "999 bytes");
        assert_eq!(human(1_500), "1.5 kB");
        assert!(physical_memory() > 0 && memory_limit() < physical_memory());
    }
}
