//! Working units, so that every input whose result float64 can represent is computed: a
//! computation runs on rewards and bandwidths divided by a power of two 2^e, which is exact in
//! binary floating point, chosen so that every kernel evaluation stays inside float64's range.
//!
//! - rbf, laplacian, imq: values are functions of d / s, so e centres the bandwidths on 1 when they
//!   lie outside [2^-60, 2^60] (or the rewards' range overflows); gradients are multiplied by 2^-e.
//!   With bandwidths s' in [2^-60, 2^60] and a range below 2^900, k(d) and its slope never meet
//!   0 x inf (an overflowing d^2 / s'^2 gives k = 0 and a finite slope factor).
//! - energy: k(d) = -|d| is homogeneous of degree 1, so e brings the rewards' range near 1 when it
//!   lies outside [2^-500, 2^500]; values are multiplied by 2^e, gradients are unchanged.
//!
//! Ordinary inputs get e = 0 and are computed exactly as without units. Refused: rewards spanning
//! more than 2^900 bandwidths, bandwidths more than a factor 2^120 apart, and results (values,
//! gradients) beyond float64.

use crate::error::{MmdError, Result};
use crate::kernel::KernelKind;

/// Bandwidths are kept in [2^-BANDWIDTH_EXPONENT, 2^BANDWIDTH_EXPONENT].
const BANDWIDTH_EXPONENT: i32 = 60;
/// The energy kernel's range is kept in [2^-RANGE_EXPONENT, 2^RANGE_EXPONENT].
const RANGE_EXPONENT: i32 = 500;
/// The largest range of rewards in bandwidth units.
const SPAN_EXPONENT: i32 = 900;

/// x * 2^e, exactly when the result is a normal number, for any e.
pub fn times_pow2(mut x: f64, mut e: i32) -> f64 {
    while e != 0 {
        let step = e.clamp(-1000, 1000);
        x *= f64::powi(2.0, step);
        e -= step;
    }
    x
}

/// floor(log2 x) for x > 0.
fn exponent(x: f64) -> i32 {
    x.log2().floor() as i32
}

/// A number too large for float64, written from its mantissa and binary exponent.
fn describe(mantissa: f64, e: i32) -> String {
    let log10 = mantissa.abs().log10() + f64::from(e) * std::f64::consts::LOG10_2;
    format!("{:.2}e{}", 10f64.powf(log10 - log10.floor()), log10.floor())
}

/// The units of one computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    exponent: i32,
    energy: bool,
    /// The smallest reward: what the rewards are measured from when e < 0.
    low: f64,
}

impl Units {
    /// The rewards' own units (e = 0).
    pub fn identity() -> Self {
        Self {
            exponent: 0,
            energy: false,
            low: 0.0,
        }
    }

    /// Units for rewards in [low, high] and the bandwidths (in the rewards' units; none for energy).
    pub fn choose(kind: KernelKind, low: f64, high: f64, bandwidths: &[f64]) -> Result<Self> {
        let half_range = 0.5 * high - 0.5 * low; // never overflows
        let energy = kind == KernelKind::Energy;
        let mut units = Self {
            exponent: 0,
            energy,
            low,
        };
        // The least e that keeps the range finite: 1 when high - low overflows, else none.
        let floor = i32::from(!(2.0 * half_range).is_finite());
        if energy {
            let range = 2.0 * half_range;
            let ordinary = range == 0.0
                || (range >= f64::powi(2.0, -RANGE_EXPONENT)
                    && range <= f64::powi(2.0, RANGE_EXPONENT));
            if !ordinary {
                units.exponent = exponent(half_range) + 1;
            }
            return Ok(units);
        }
        let smallest = bandwidths.iter().copied().fold(f64::INFINITY, f64::min);
        let largest = bandwidths.iter().copied().fold(0.0, f64::max);
        let limit = f64::powi(2.0, BANDWIDTH_EXPONENT);
        let within =
            |e: i32| times_pow2(smallest, -e) >= 1.0 / limit && times_pow2(largest, -e) <= limit;
        if !within(floor) {
            if exponent(largest) - exponent(smallest) > 2 * BANDWIDTH_EXPONENT - 2 {
                return Err(MmdError::TooLarge(format!(
                    "bandwidths {smallest} and {largest} are more than a factor 2^{} apart: \
                     float64 cannot compute both kernels at once",
                    2 * BANDWIDTH_EXPONENT
                )));
            }
            units.exponent = (exponent(smallest) + exponent(largest)).div_euclid(2);
        }
        if floor > 0 {
            units.exponent = units.exponent.max(floor);
        }
        // The range in bandwidths (half_range / smallest may overflow: then it is refused).
        if half_range / smallest >= f64::powi(2.0, SPAN_EXPONENT - 1) {
            return Err(MmdError::TooLarge(format!(
                "the rewards span {}, more than 2^{SPAN_EXPONENT} times the bandwidth {smallest}: \
                 float64 cannot evaluate the kernel across that range; rescale the rewards or \
                 widen the bandwidth",
                describe(half_range, 1),
            )));
        }
        Ok(units)
    }

    #[cfg(test)]
    pub fn exponent(&self) -> i32 {
        self.exponent
    }

    /// Converts rewards to these units, in place (measured from the smallest reward when e < 0,
    /// so that scaling up cannot overflow).
    pub fn apply(&self, values: &mut [f64]) {
        match self.exponent {
            0 => {}
            e if e > 0 => values.iter_mut().for_each(|x| *x = times_pow2(*x, -e)),
            e => values
                .iter_mut()
                .for_each(|x| *x = times_pow2(*x - self.low, -e)),
        }
    }

    /// Bandwidths in these units.
    pub fn bandwidths(&self, bandwidths: &[f64]) -> Vec<f64> {
        bandwidths
            .iter()
            .map(|&s| times_pow2(s, -self.exponent))
            .collect()
    }

    /// A statistic (MMD^2 or a matrix entry) in the rewards' units; refused when it overflows.
    pub fn value(&self, value: f64) -> Result<f64> {
        if !self.energy || self.exponent == 0 || value.is_nan() {
            return Ok(value);
        }
        let scaled = times_pow2(value, self.exponent);
        if scaled.is_finite() {
            Ok(scaled)
        } else {
            Err(MmdError::TooLarge(format!(
                "the energy MMD^2 of these rewards is about {}, beyond the largest float64 \
                 ({:e}): rescale the rewards",
                describe(value, self.exponent),
                f64::MAX
            )))
        }
    }

    /// Statistics in the rewards' units, in place.
    pub fn values(&self, values: &mut [f64]) -> Result<()> {
        for v in values.iter_mut() {
            *v = self.value(*v)?;
        }
        Ok(())
    }

    /// A gradient with respect to the rewards in the rewards' units, in place; refused when an
    /// entry overflows.
    pub fn gradient(&self, gradient: &mut [f64]) -> Result<()> {
        let e = if self.energy { 0 } else { -self.exponent };
        for g in gradient.iter_mut() {
            let scaled = times_pow2(*g, e);
            if !scaled.is_finite() {
                return Err(MmdError::TooLarge(format!(
                    "the gradient with respect to the rewards reaches about {}, beyond the largest \
                     float64: the bandwidth is too small for float64's range; widen it or rescale \
                     the rewards",
                    describe(*g, e)
                )));
            }
            *g = scaled;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_inputs_keep_their_units() {
        for kind in [KernelKind::Rbf, KernelKind::Energy] {
            let units = Units::choose(kind, -3.0, 1e6, &[0.5, 20.0]).unwrap();
            assert_eq!(units.exponent(), 0);
            let mut v = [1.5, -2.0];
            units.apply(&mut v);
            assert_eq!(v, [1.5, -2.0]);
        }
    }

    #[test]
    fn extreme_scales_move_to_units_near_one() {
        let units = Units::choose(KernelKind::Rbf, 0.0, 1e-155, &[1e-160]).unwrap();
        let s = units.bandwidths(&[1e-160])[0];
        assert!((0.5..2.0).contains(&s), "{s}");
        let units = Units::choose(KernelKind::Energy, -1.7e308, 1.7e308, &[]).unwrap();
        let mut v = [-1.7e308, 1.7e308];
        units.apply(&mut v);
        assert!((v[1] - v[0]).is_finite() && v[1] - v[0] < 4.0);
        assert!(units.value(3.0).is_err());
        assert_eq!(
            units.value(0.25).unwrap(),
            times_pow2(0.25, units.exponent())
        );
        // rewards spanning 1e300 bandwidths of 1e-10: beyond 2^900
        assert!(Units::choose(KernelKind::Rbf, 0.0, 1e290, &[1e-10]).is_err());
        assert!(Units::choose(KernelKind::Rbf, 0.0, 1.0, &[1e-30, 1e30]).is_err());
        // a ratio beyond float64 is refused too
        assert!(Units::choose(KernelKind::Rbf, -1e300, 1e300, &[1e-300]).is_err());
        assert_eq!(times_pow2(1.0, -1074), f64::from_bits(1));
        assert_eq!(
            times_pow2(f64::from_bits(1), 1074 + 1023),
            f64::powi(2.0, 1023)
        );
    }
}
