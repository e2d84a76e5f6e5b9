//! Whole vectors of 8 float64 lanes for the hot loops, and the vector exp they need.
//!
//! Hot loops are written once, generic over `Lanes`, and run through `run` on the widest
//! instruction set this CPU has (`isa()`, detected once per process, so every thread of every
//! computation takes the same path): AVX-512F (one 512-bit register), AVX2 + FMA (two 256-bit
//! registers) or portable Rust (`[f64; 8]`, which the compiler vectorises as it can). Every path
//! evaluates the same operations in the same order on the same 8 logical lanes, so AVX-512, AVX2
//! and the portable code with fused multiply-adds give the same bits; the portable fallback fuses
//! only where the target has an FMA instruction (unfused it differs by rounding only).
//!
//! `exp_nonpositive` is e^a for a <= 0: a = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite, ln 2 in two
//! parts), e^r from a degree-11 polynomial fitted for relative error (3e-18 in exact arithmetic,
//! 1.2e-17 with float64 coefficients), then times 2^n by the exponent bits, with gradual underflow
//! and 0 below -745.2 (and for -inf). Its error against libm is measured in `tests`.

use std::sync::OnceLock;

mod portable;
pub(crate) use portable::Portable;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(test)]
pub(crate) mod tests;

/// Logical lanes of every vector type.
pub(crate) const LANES: usize = 8;

/// A vector of `LANES` float64 values. Every method is inlined into the caller, so that it is
/// compiled with the instruction set of the `run` entry point it is called from.
pub(crate) trait Lanes: Copy {
    /// Which lanes an operation keeps.
    type Mask: Copy;

    fn splat(x: f64) -> Self;
    fn load(from: &[f64; LANES]) -> Self;
    fn store(self, to: &mut [f64; LANES]);
    fn to_array(self) -> [f64; LANES];
    fn add(self, b: Self) -> Self;
    fn sub(self, b: Self) -> Self;
    fn mul(self, b: Self) -> Self;
    fn div(self, b: Self) -> Self;
    fn sqrt(self) -> Self;
    /// The larger of each pair (neither may be NaN).
    fn max(self, b: Self) -> Self;
    /// self * b + c, rounded once (where the type fuses).
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// c - self * b, rounded as `mul_add`.
    fn neg_mul_add(self, b: Self, c: Self) -> Self;
    fn abs(self) -> Self;
    /// The sign bits alone: -0.0 in negative lanes, +0.0 elsewhere.
    fn sign(self) -> Self;
    fn xor(self, b: Self) -> Self;
    /// The lanes that are not +-0.
    fn nonzero(self) -> Self::Mask;
    /// Lanes `from..to` (to <= LANES).
    fn lanes(from: usize, to: usize) -> Self::Mask;
    /// This vector in the lanes of `mask`, +0.0 elsewhere.
    fn keep(self, mask: Self::Mask) -> Self;
    /// self * 2^n, rounded once, for self in [0.5, 2] and integer n in [-1100, 0]. `shifted` is
    /// n + 512 + 1.5 * 2^52, whose low mantissa bits hold n + 512 (see `exp_nonpositive`).
    fn times_pow2(self, n: Self, shifted: Self) -> Self;
}

/// Below this e^a is 0 in float64 (e^-745.14 is half the smallest subnormal).
const EXP_FLOOR: f64 = -746.0;
/// Adding it rounds a value to an integer n and leaves n + 512 in the low mantissa bits.
const SHIFT: f64 = 6_755_399_441_055_744.0 + 512.0;
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO; LN2_HI has 21 trailing zero bits, so n * LN2_HI is exact.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// e^r = sum_k EXP_COEFFICIENTS[k] r^k on |r| <= ln2 / 2 (near-minimax relative error, c0 = 1).
const EXP_COEFFICIENTS: [f64; 12] = [
    1.0,
    1.0,
    0.500_000_000_000_001_2,
    0.166_666_666_666_662_16,
    0.041_666_666_666_517_825,
    0.008_333_333_333_549_697,
    0.001_388_888_894_635_319_6,
    0.000_198_412_694_367_867_94,
    2.480_149_063_605_64e-5,
    2.755_762_670_580_133e-6,
    2.763_103_417_799_931e-7,
    2.499_143_010_626_16e-8,
];

/// e^a in every lane, for a <= 0 or -inf (not NaN).
#[inline(always)]
pub(crate) fn exp_nonpositive<V: Lanes>(a: V) -> V {
    let a = a.max(V::splat(EXP_FLOOR));
    let shifted = a.mul_add(V::splat(LOG2_E), V::splat(SHIFT));
    let n = shifted.sub(V::splat(SHIFT));
    let r = n.neg_mul_add(V::splat(LN2_HI), a);
    let r = n.neg_mul_add(V::splat(LN2_LO), r);
    let [c0, rest @ ..] = EXP_COEFFICIENTS;
    let mut p = V::splat(rest[rest.len() - 1]);
    for &c in rest[..rest.len() - 1].iter().rev() {
        p = p.mul_add(r, V::splat(c));
    }
    p.mul_add(r, V::splat(c0)).times_pow2(n, shifted)
}

/// (((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))): one order for every instruction set.
#[inline(always)]
pub(crate) fn sum_lanes<V: Lanes>(v: V) -> f64 {
    let l = v.to_array();
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// The `LANES` values of `s` from `at`.
#[inline(always)]
pub(crate) fn lanes_at(s: &[f64], at: usize) -> &[f64; LANES] {
    s[at..at + LANES].try_into().expect("LANES values")
}

#[inline(always)]
pub(crate) fn lanes_at_mut(s: &mut [f64], at: usize) -> &mut [f64; LANES] {
    (&mut s[at..at + LANES]).try_into().expect("LANES values")
}

/// Work that runs on any vector type; `run` is inlined into the entry point of each instruction
/// set, so it must be `#[inline(always)]` (as everything it calls in the hot loop).
pub(crate) trait LaneJob {
    type Output;
    fn run<V: Lanes>(self) -> Self::Output;
}

/// An instruction set the hot loops can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// `[f64; 8]`, fused multiply-adds only where the target has them.
    Portable,
    /// `[f64; 8]` with fused multiply-adds always (slow where they are emulated): the reference
    /// model of the vector paths.
    #[cfg(test)]
    PortableFused,
    Avx2,
    Avx512,
}

impl Isa {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(test)]
            Isa::PortableFused => "portable (fused)",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512f",
        }
    }

    /// Whether this CPU runs it.
    pub(crate) fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(test)]
            Isa::PortableFused => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }
}

/// Whether the portable fallback fuses multiply-adds: only where the target has an instruction
/// for it (elsewhere `f64::mul_add` is a slow software routine).
pub(crate) const PORTABLE_FUSES: bool = cfg!(any(target_feature = "fma", target_arch = "aarch64"));

/// The widest instruction set of this CPU: chosen once per process.
pub(crate) fn isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.available())
            .unwrap_or(Isa::Portable)
    })
}

/// Runs `job` on `isa`'s vectors. Panics if this CPU lacks `isa` (`isa()` never does).
pub(crate) fn run<J: LaneJob>(isa: Isa, job: J) -> J::Output {
    assert!(isa.available(), "this CPU has no {}", isa.name());
    match isa {
        Isa::Portable => job.run::<Portable<PORTABLE_FUSES>>(),
        #[cfg(test)]
        Isa::PortableFused => job.run::<Portable<true>>(),
        // SAFETY: the assertion above checked that this CPU has AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::run(job) },
        // SAFETY: the assertion above checked that this CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::run(job) },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => unreachable!("never available off x86_64"),
    }
}
