//! `Lanes` as one 512-bit AVX-512F register.
//!
//! Every intrinsic here needs AVX-512F. The type is private to `simd` and only ever built inside
//! `run`, whose caller checked that the CPU has it (see the `unsafe` blocks).

use super::{LaneJob, Lanes, LANES};
use std::arch::x86_64::*;

#[derive(Clone, Copy)]
pub(super) struct Avx512(__m512d);

/// Runs `job` compiled for AVX-512F.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn run<J: LaneJob>(job: J) -> J::Output {
    job.run::<Avx512>()
}

/// Applies an intrinsic to the registers.
macro_rules! op {
    ($f:ident, $($a:expr),+) => {
        // SAFETY: `Avx512` values exist only inside `run`, on a CPU with AVX-512F.
        unsafe { Avx512($f($($a.0),+)) }
    };
}

impl Avx512 {
    /// A bitwise operation (AVX-512F has them on integers only; the casts reinterpret bits).
    #[inline(always)]
    fn bits(self, f: impl Fn(__m512i, __m512i) -> __m512i, b: Self) -> Self {
        // SAFETY: as in `op!`.
        unsafe {
            Avx512(_mm512_castsi512_pd(f(
                _mm512_castpd_si512(self.0),
                _mm512_castpd_si512(b.0),
            )))
        }
    }
}

impl Lanes for Avx512 {
    type Mask = __mmask8;

    #[inline(always)]
    fn splat(x: f64) -> Self {
        // SAFETY: as in `op!`.
        unsafe { Avx512(_mm512_set1_pd(x)) }
    }
    #[inline(always)]
    fn load(from: &[f64; LANES]) -> Self {
        // SAFETY: as in `op!`; `from` holds 8 values, read unaligned.
        unsafe { Avx512(_mm512_loadu_pd(from.as_ptr())) }
    }
    #[inline(always)]
    fn store(self, to: &mut [f64; LANES]) {
        // SAFETY: as in `op!`; `to` holds 8 values, written unaligned.
        unsafe { _mm512_storeu_pd(to.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn to_array(self) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        self.store(&mut out);
        out
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        op!(_mm512_add_pd, self, b)
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        op!(_mm512_sub_pd, self, b)
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        op!(_mm512_mul_pd, self, b)
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        op!(_mm512_div_pd, self, b)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        op!(_mm512_sqrt_pd, self)
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        op!(_mm512_max_pd, self, b)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        op!(_mm512_fmadd_pd, self, b, c)
    }
    #[inline(always)]
    fn neg_mul_add(self, b: Self, c: Self) -> Self {
        op!(_mm512_fnmadd_pd, self, b, c)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: as in `op!`.
        self.bits(
            |a, b| unsafe { _mm512_andnot_si512(b, a) },
            Self::splat(-0.0),
        )
    }
    #[inline(always)]
    fn sign(self) -> Self {
        // SAFETY: as in `op!`.
        self.bits(|a, b| unsafe { _mm512_and_si512(a, b) }, Self::splat(-0.0))
    }
    #[inline(always)]
    fn xor(self, b: Self) -> Self {
        // SAFETY: as in `op!`.
        self.bits(|a, b| unsafe { _mm512_xor_si512(a, b) }, b)
    }
    #[inline(always)]
    fn nonzero(self) -> Self::Mask {
        // SAFETY: as in `op!`.
        unsafe { _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(self.0, _mm512_setzero_pd()) }
    }
    #[inline(always)]
    fn lanes(from: usize, to: usize) -> Self::Mask {
        ((1u32 << to) - (1u32 << from)) as __mmask8
    }
    #[inline(always)]
    fn keep(self, mask: Self::Mask) -> Self {
        // SAFETY: as in `op!`.
        unsafe { Avx512(_mm512_maskz_mov_pd(mask, self.0)) }
    }
    #[inline(always)]
    fn times_pow2(self, n: Self, _shifted: Self) -> Self {
        // One instruction, rounded once with gradual underflow: the same bits as the exponent-field
        // addition and multiplication of the other paths.
        op!(_mm512_scalef_pd, self, n)
    }
}
