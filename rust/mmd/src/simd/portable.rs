//! `Lanes` in plain Rust: 8 float64 values, fused multiply-adds when `FUSED`.

use super::{Lanes, LANES};

#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable<const FUSED: bool>(pub [f64; LANES]);

impl<const FUSED: bool> Portable<FUSED> {
    #[inline(always)]
    fn map(self, f: impl Fn(f64) -> f64) -> Self {
        Self(self.0.map(f))
    }

    #[inline(always)]
    fn zip(self, b: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self(std::array::from_fn(|l| f(self.0[l], b.0[l])))
    }

    #[inline(always)]
    fn fma(a: f64, b: f64, c: f64) -> f64 {
        if FUSED {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }
}

impl<const FUSED: bool> Lanes for Portable<FUSED> {
    type Mask = [bool; LANES];

    #[inline(always)]
    fn splat(x: f64) -> Self {
        Self([x; LANES])
    }
    #[inline(always)]
    fn load(from: &[f64; LANES]) -> Self {
        Self(*from)
    }
    #[inline(always)]
    fn store(self, to: &mut [f64; LANES]) {
        *to = self.0;
    }
    #[inline(always)]
    fn to_array(self) -> [f64; LANES] {
        self.0
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        self.zip(b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        self.zip(b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        self.zip(b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        self.zip(b, |x, y| x / y)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        self.map(f64::sqrt)
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        self.zip(b, |x, y| if x > y { x } else { y })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|l| {
            Self::fma(self.0[l], b.0[l], c.0[l])
        }))
    }
    #[inline(always)]
    fn neg_mul_add(self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|l| {
            Self::fma(-self.0[l], b.0[l], c.0[l])
        }))
    }
    #[inline(always)]
    fn abs(self) -> Self {
        self.map(f64::abs)
    }
    #[inline(always)]
    fn sign(self) -> Self {
        self.map(|x| f64::from_bits(x.to_bits() & (1 << 63)))
    }
    #[inline(always)]
    fn xor(self, b: Self) -> Self {
        self.zip(b, |x, y| f64::from_bits(x.to_bits() ^ y.to_bits()))
    }
    #[inline(always)]
    fn nonzero(self) -> Self::Mask {
        self.0.map(|x| x != 0.0)
    }
    #[inline(always)]
    fn lanes(from: usize, to: usize) -> Self::Mask {
        std::array::from_fn(|l| from <= l && l < to)
    }
    #[inline(always)]
    fn keep(self, mask: Self::Mask) -> Self {
        Self(std::array::from_fn(
            |l| if mask[l] { self.0[l] } else { 0.0 },
        ))
    }
    #[inline(always)]
    fn times_pow2(self, _n: Self, shifted: Self) -> Self {
        // p * 2^(n + 512) by adding n + 512 to the exponent field (a normal number: exact), then
        // one rounded multiplication by 2^-512, which underflows gradually.
        self.zip(shifted, |p, s| {
            f64::from_bits(p.to_bits().wrapping_add(s.to_bits() << 52)) * f64::powi(2.0, -512)
        })
    }
}
