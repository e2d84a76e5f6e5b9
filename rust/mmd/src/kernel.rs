//! Kernels on scalar rewards, as functions of d = a - b.
//!
//! | kernel    | k(d)                     | dk/dd                          |
//! |-----------|--------------------------|--------------------------------|
//! | rbf       | exp(-d^2 / (2 s^2))      | -d / s^2 * k                   |
//! | laplacian | exp(-abs(d) / s)         | -sign(d) / s * k               |
//! | imq       | (1 + d^2 / s^2)^(-1/2)   | -d / s^2 * (1 + d^2/s^2)^(-3/2)|
//! | energy    | -abs(d)                  | -sign(d)                       |
//!
//! With several bandwidths the kernel is the mean of the kernels at each bandwidth. At d = 0 the
//! (sub)gradient of laplacian and energy is taken as 0, so that ties contribute no gradient.

use crate::choices::choices;
use crate::error::{MmdError, Result};
use crate::simd::{exp_nonpositive, Lanes};

choices! {
    "kernel",
    pub enum KernelKind {
        Rbf => "rbf",
        Laplacian => "laplacian",
        Imq => "imq",
        Energy => "energy",
    }
}

/// A kernel with its bandwidths resolved to numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    kind: KernelKind,
    /// Per bandwidth s, the precomputed scale the kernel needs (1/(2s^2), 1/s or 1/s^2).
    scales: Vec<f64>,
}

impl Kernel {
    /// Checks bandwidths for a kernel: non-empty, finite and > 0 (ignored for energy).
    pub fn check(kind: KernelKind, bandwidths: &[f64]) -> Result<()> {
        if kind == KernelKind::Energy {
            return Ok(());
        }
        if bandwidths.is_empty() {
            return Err(MmdError::InvalidArgument(
                "bandwidth is an empty sequence".into(),
            ));
        }
        if let Some(bad) = bandwidths.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(MmdError::InvalidArgument(format!(
                "bandwidth must be finite and > 0, got {bad}"
            )));
        }
        Ok(())
    }

    /// Builds a kernel; `bandwidths` as `check` wants them.
    pub fn new(kind: KernelKind, bandwidths: &[f64]) -> Result<Self> {
        Self::check(kind, bandwidths)?;
        if kind == KernelKind::Energy {
            return Ok(Self {
                kind,
                scales: vec![1.0],
            });
        }
        let scales = bandwidths
            .iter()
            .map(|&s| match kind {
                KernelKind::Rbf => 1.0 / (2.0 * s * s),
                KernelKind::Laplacian => 1.0 / s,
                KernelKind::Imq => 1.0 / (s * s),
                KernelKind::Energy => unreachable!("handled above"),
            })
            .collect();
        Ok(Self { kind, scales })
    }

    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    /// Per bandwidth, the scale the kernel formula takes (see `scales`).
    pub(crate) fn scales(&self) -> &[f64] {
        &self.scales
    }

    /// (kind, scale) when there is one bandwidth, so that hot loops can specialise on it.
    pub fn single_scale(&self) -> Option<(KernelKind, f64)> {
        match self.scales.as_slice() {
            [c] => Some((self.kind, *c)),
            _ => None,
        }
    }

    /// k(d).
    #[inline(always)]
    pub fn value(&self, d: f64) -> f64 {
        match self.scales.as_slice() {
            [c] => self.value_at(d, *c),
            many => many.iter().map(|&c| self.value_at(d, c)).sum::<f64>() / many.len() as f64,
        }
    }

    /// (k(d), dk/dd).
    #[inline(always)]
    pub fn value_and_slope(&self, d: f64) -> (f64, f64) {
        match self.scales.as_slice() {
            [c] => self.value_and_slope_at(d, *c),
            many => {
                let (mut k, mut dk) = (0.0, 0.0);
                for &c in many {
                    let (a, b) = self.value_and_slope_at(d, c);
                    k += a;
                    dk += b;
                }
                let m = many.len() as f64;
                (k / m, dk / m)
            }
        }
    }

    #[inline(always)]
    fn value_at(&self, d: f64, c: f64) -> f64 {
        match self.kind {
            KernelKind::Rbf => (-d * d * c).exp(),
            KernelKind::Laplacian => (-d.abs() * c).exp(),
            KernelKind::Imq => 1.0 / (1.0 + d * d * c).sqrt(),
            KernelKind::Energy => -d.abs(),
        }
    }

    #[inline(always)]
    fn value_and_slope_at(&self, d: f64, c: f64) -> (f64, f64) {
        match self.kind {
            KernelKind::Rbf => {
                let k = (-d * d * c).exp();
                (k, -2.0 * c * d * k)
            }
            KernelKind::Laplacian => {
                let k = (-d.abs() * c).exp();
                (k, -sign(d) * c * k)
            }
            KernelKind::Imq => {
                let k = 1.0 / (1.0 + d * d * c).sqrt();
                (k, -c * d * k * k * k)
            }
            KernelKind::Energy => (-d.abs(), -sign(d)),
        }
    }
}

/// The kernels on whole vectors of differences d, for the hot loops: (k(d), a slope s), where
/// dk/dd = `SLOPE_SCALE` * s (a power of two, folded into the caller's weights, so that the result
/// is the same as multiplying here). Same formulas as `Kernel`; the exponential is
/// `exp_nonpositive`, so values agree with `Kernel::value` to about one unit in the last place.
pub(crate) trait VectorKernel: Sync {
    const SLOPE_SCALE: f64;
    fn eval<V: Lanes>(&self, d: V) -> (V, V);
}

/// A single-bandwidth kernel, holding minus its scale (see `Kernel::scales`).
pub(crate) struct Rbf(pub f64);
pub(crate) struct Laplacian(pub f64);
pub(crate) struct Imq(pub f64);
pub(crate) struct Energy;
/// The mean over bandwidths of one kind's kernels.
pub(crate) struct Mean<K>(pub Vec<K>);

impl VectorKernel for Rbf {
    const SLOPE_SCALE: f64 = 2.0;
    /// e^(-c d^2), slope -c d k.
    #[inline(always)]
    fn eval<V: Lanes>(&self, d: V) -> (V, V) {
        let e = d.mul(V::splat(self.0));
        let k = exp_nonpositive(e.mul(d));
        (k, e.mul(k))
    }
}

impl VectorKernel for Laplacian {
    const SLOPE_SCALE: f64 = 1.0;
    /// e^(-c |d|), slope -sign(d) c k (0 at d = 0).
    #[inline(always)]
    fn eval<V: Lanes>(&self, d: V) -> (V, V) {
        let minus_c = V::splat(self.0);
        let k = exp_nonpositive(d.abs().mul(minus_c));
        (k, minus_c.xor(d.sign()).mul(k).keep(d.nonzero()))
    }
}

impl VectorKernel for Imq {
    const SLOPE_SCALE: f64 = 1.0;
    /// (1 + c d^2)^(-1/2) = sqrt(v) with v = 1 / (1 + c d^2), slope -c d k v.
    #[inline(always)]
    fn eval<V: Lanes>(&self, d: V) -> (V, V) {
        let e = d.mul(V::splat(self.0));
        let v = V::splat(1.0).div(e.neg_mul_add(d, V::splat(1.0)));
        let k = v.sqrt();
        (k, e.mul(k).mul(v))
    }
}

impl VectorKernel for Energy {
    const SLOPE_SCALE: f64 = 1.0;
    /// -|d|, slope -sign(d) (0 at d = 0).
    #[inline(always)]
    fn eval<V: Lanes>(&self, d: V) -> (V, V) {
        let minus_one = V::splat(-1.0);
        (
            d.abs().xor(V::splat(-0.0)),
            minus_one.xor(d.sign()).keep(d.nonzero()),
        )
    }
}

impl<K: VectorKernel> VectorKernel for Mean<K> {
    const SLOPE_SCALE: f64 = K::SLOPE_SCALE;
    #[inline(always)]
    fn eval<V: Lanes>(&self, d: V) -> (V, V) {
        let (mut k, mut slope) = (V::splat(0.0), V::splat(0.0));
        for part in &self.0 {
            let (a, b) = part.eval(d);
            k = k.add(a);
            slope = slope.add(b);
        }
        let inverse = V::splat(1.0 / self.0.len() as f64);
        (k.mul(inverse), slope.mul(inverse))
    }
}

/// sign with sign(0) = 0.
#[inline(always)]
fn sign(d: f64) -> f64 {
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_match_finite_differences() {
        for kind in [
            KernelKind::Rbf,
            KernelKind::Laplacian,
            KernelKind::Imq,
            KernelKind::Energy,
        ] {
            let kernel = Kernel::new(kind, &[0.7, 2.0]).unwrap();
            for d in [-2.3, -0.4, 0.3, 1.9] {
                let h = 1e-6;
                let numeric = (kernel.value(d + h) - kernel.value(d - h)) / (2.0 * h);
                let (k, slope) = kernel.value_and_slope(d);
                assert!((k - kernel.value(d)).abs() < 1e-15);
                assert!(
                    (numeric - slope).abs() < 1e-7,
                    "{kind:?} at {d}: {numeric} vs {slope}"
                );
            }
        }
    }

    #[test]
    fn refuses_bad_bandwidths() {
        assert!(Kernel::new(KernelKind::Rbf, &[]).is_err());
        assert!(Kernel::new(KernelKind::Rbf, &[0.0]).is_err());
        assert!(Kernel::new(KernelKind::Imq, &[f64::NAN]).is_err());
        assert!(Kernel::new(KernelKind::Energy, &[]).is_ok());
        assert!("gauss".parse::<KernelKind>().is_err());
    }
}
