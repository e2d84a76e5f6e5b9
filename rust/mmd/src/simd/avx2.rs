//! `Lanes` as two 256-bit AVX2 registers (lanes 0-3 and 4-7), with FMA.
//!
//! Every intrinsic here needs AVX2 and FMA. The type is private to `simd` and only ever built
//! inside `run`, whose caller checked that the CPU has both (see the `unsafe` blocks).

use super::{LaneJob, Lanes, LANES};
use std::arch::x86_64::*;

#[derive(Clone, Copy)]
pub(super) struct Avx2([__m256d; 2]);

/// Runs `job` compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run<J: LaneJob>(job: J) -> J::Output {
    job.run::<Avx2>()
}

/// Applies a two-operand intrinsic to both halves.
macro_rules! both {
    ($f:ident, $a:expr) => {
        // SAFETY: `Avx2` values exist only inside `run`, on a CPU with AVX2 and FMA.
        unsafe { Avx2([$f($a.0[0]), $f($a.0[1])]) }
    };
    ($f:ident, $a:expr, $b:expr) => {
        // SAFETY: as above.
        unsafe { Avx2([$f($a.0[0], $b.0[0]), $f($a.0[1], $b.0[1])]) }
    };
    ($f:ident, $a:expr, $b:expr, $c:expr) => {
        // SAFETY: as above.
        unsafe { Avx2([$f($a.0[0], $b.0[0], $c.0[0]), $f($a.0[1], $b.0[1], $c.0[1])]) }
    };
}

impl Avx2 {
    #[inline(always)]
    fn bits(self, f: impl Fn(__m256i, __m256i) -> __m256i, b: Self) -> Self {
        // SAFETY: as in `both!`; the casts only reinterpret bits.
        unsafe {
            let half = |l: usize| {
                _mm256_castsi256_pd(f(
                    _mm256_castpd_si256(self.0[l]),
                    _mm256_castpd_si256(b.0[l]),
                ))
            };
            Avx2([half(0), half(1)])
        }
    }
}

impl Lanes for Avx2 {
    /// All ones in the kept lanes.
    type Mask = [__m256d; 2];

    #[inline(always)]
    fn splat(x: f64) -> Self {
        // SAFETY: as in `both!`.
        unsafe { Avx2([_mm256_set1_pd(x); 2]) }
    }
    #[inline(always)]
    fn load(from: &[f64; LANES]) -> Self {
        // SAFETY: as in `both!`; `from` holds 8 values, read unaligned.
        unsafe {
            Avx2([
                _mm256_loadu_pd(from.as_ptr()),
                _mm256_loadu_pd(from.as_ptr().add(4)),
            ])
        }
    }
    #[inline(always)]
    fn store(self, to: &mut [f64; LANES]) {
        // SAFETY: as in `both!`; `to` holds 8 values, written unaligned.
        unsafe {
            _mm256_storeu_pd(to.as_mut_ptr(), self.0[0]);
            _mm256_storeu_pd(to.as_mut_ptr().add(4), self.0[1]);
        }
    }
    #[inline(always)]
    fn to_array(self) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        self.store(&mut out);
        out
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        both!(_mm256_add_pd, self, b)
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        both!(_mm256_sub_pd, self, b)
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        both!(_mm256_mul_pd, self, b)
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        both!(_mm256_div_pd, self, b)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        both!(_mm256_sqrt_pd, self)
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        both!(_mm256_max_pd, self, b)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        both!(_mm256_fmadd_pd, self, b, c)
    }
    #[inline(always)]
    fn neg_mul_add(self, b: Self, c: Self) -> Self {
        both!(_mm256_fnmadd_pd, self, b, c)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        self.bits(
            // SAFETY: as in `both!`.
            |a, b| unsafe { _mm256_andnot_si256(b, a) },
            Self::splat(-0.0),
        )
    }
    #[inline(always)]
    fn sign(self) -> Self {
        // SAFETY: as in `both!`.
        self.bits(|a, b| unsafe { _mm256_and_si256(a, b) }, Self::splat(-0.0))
    }
    #[inline(always)]
    fn xor(self, b: Self) -> Self {
        // SAFETY: as in `both!`.
        self.bits(|a, b| unsafe { _mm256_xor_si256(a, b) }, b)
    }
    #[inline(always)]
    fn nonzero(self) -> Self::Mask {
        // SAFETY: as in `both!`.
        unsafe {
            let zero = _mm256_setzero_pd();
            self.0.map(|half| _mm256_cmp_pd::<_CMP_NEQ_UQ>(half, zero))
        }
    }
    #[inline(always)]
    fn lanes(from: usize, to: usize) -> Self::Mask {
        // SAFETY: as in `both!`.
        unsafe {
            let (from, to) = (_mm256_set1_pd(from as f64), _mm256_set1_pd(to as f64));
            let half = |index: __m256d| {
                _mm256_and_pd(
                    _mm256_cmp_pd::<_CMP_GE_OQ>(index, from),
                    _mm256_cmp_pd::<_CMP_LT_OQ>(index, to),
                )
            };
            [
                half(_mm256_setr_pd(0.0, 1.0, 2.0, 3.0)),
                half(_mm256_setr_pd(4.0, 5.0, 6.0, 7.0)),
            ]
        }
    }
    #[inline(always)]
    fn keep(self, mask: Self::Mask) -> Self {
        both!(_mm256_and_pd, self, Avx2(mask))
    }
    #[inline(always)]
    fn times_pow2(self, _n: Self, shifted: Self) -> Self {
        // As the portable code: add n + 512 to the exponent field, then times 2^-512 (rounded once).
        let scaled = self.bits(
            // SAFETY: as in `both!`.
            |p, s| unsafe { _mm256_add_epi64(p, _mm256_slli_epi64::<52>(s)) },
            shifted,
        );
        scaled.mul(Self::splat(f64::powi(2.0, -512)))
    }
}
