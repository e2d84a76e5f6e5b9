//! The vector exp against libm, and every instruction set against the fused portable model.
//! `cargo test -p crm-mmd --release simd -- --nocapture` prints the errors measured.

use super::*;
use crate::kernel::{Energy, Imq, Laplacian, Mean, Rbf, VectorKernel};

/// Every instruction set, available here or not (the sweep tests use it too).
pub(crate) const ALL: [Isa; 4] = [Isa::Portable, Isa::PortableFused, Isa::Avx2, Isa::Avx512];

fn available() -> impl Iterator<Item = Isa> {
    ALL.into_iter().filter(|isa| isa.available())
}

/// `f` on `xs`, `LANES` at a time (the last vector padded with 0).
struct Map<'a, F>(&'a [f64], F);

trait VectorFn {
    fn apply<V: Lanes>(&self, x: V) -> V;
}

impl<F: VectorFn> LaneJob for Map<'_, F> {
    type Output = Vec<f64>;
    #[inline(always)]
    fn run<V: Lanes>(self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.0.len() + LANES);
        for chunk in self.0.chunks(LANES) {
            let mut x = [0.0; LANES];
            x[..chunk.len()].copy_from_slice(chunk);
            out.extend_from_slice(&self.1.apply(V::load(&x)).to_array()[..chunk.len()]);
        }
        out
    }
}

struct Exp;
impl VectorFn for Exp {
    #[inline(always)]
    fn apply<V: Lanes>(&self, x: V) -> V {
        exp_nonpositive(x)
    }
}

/// The kernel value (`slope` false) or slope of `K` at d.
struct Eval<'a, K>(&'a K, bool);
impl<K: VectorKernel> VectorFn for Eval<'_, K> {
    #[inline(always)]
    fn apply<V: Lanes>(&self, d: V) -> V {
        let (k, slope) = self.0.eval(d);
        if self.1 {
            slope
        } else {
            k
        }
    }
}

/// Uniform numbers in [0, 1) from a xorshift generator seeded with `seed` (the sweep tests use it too).
pub(crate) fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Arguments over the kernels' range [-745.2, 0]: a fine grid, random points, every binade of small
/// magnitudes, the edges of the subnormal range and beyond.
fn exp_arguments() -> Vec<f64> {
    let mut xs: Vec<f64> = (0..=1_000_000).map(|i| -745.2 * i as f64 / 1e6).collect();
    let mut u = uniform(7);
    xs.extend((0..500_000).map(|_| -745.2 * u()));
    xs.extend((0..500_000).map(|_| -(u() * 20.0 - 10.0).exp2()));
    xs.extend((-1074..0).map(|e| -f64::powi(2.0, e)));
    xs.extend([
        0.0, -0.0, -708.39, -708.4, -709.0, -744.4, -745.13, -745.14, -745.2,
    ]);
    xs
}

#[test]
fn exp_matches_libm_over_the_kernels_range() {
    let xs = exp_arguments();
    for isa in available() {
        let ours = run(isa, Map(&xs, Exp));
        let (mut worst_rel, mut worst_ulps, mut at, mut equal) = (0.0f64, 0u64, 0.0, 0usize);
        for (&x, &y) in xs.iter().zip(&ours) {
            let exact = x.exp();
            let ulps = exact.to_bits().abs_diff(y.to_bits());
            equal += usize::from(ulps == 0);
            if exact >= f64::MIN_POSITIVE {
                let rel = (y - exact).abs() / exact;
                if rel > worst_rel {
                    (worst_rel, at) = (rel, x);
                }
                worst_ulps = worst_ulps.max(ulps);
            } else {
                // Subnormal results: within one unit of the smallest subnormal.
                assert!(
                    ulps <= 1,
                    "{} exp({x:e}) = {y:e}, libm {exact:e}",
                    isa.name()
                );
            }
        }
        println!(
            "exp on {}: max relative error {worst_rel:.3e} (at {at}), {worst_ulps} ulp; {:.2}% of \
             {} arguments in [-745.2, 0] equal to libm's",
            isa.name(),
            100.0 * equal as f64 / xs.len() as f64,
            xs.len()
        );
        assert!(worst_ulps <= 2 && worst_rel < 3e-16, "{}", isa.name());
    }
}

#[test]
fn exp_edges_are_exact() {
    let xs = [
        0.0,
        -0.0,
        -746.0,
        -1e10,
        f64::MIN,
        f64::NEG_INFINITY,
        -745.2,
    ];
    for isa in available() {
        let ours = run(isa, Map(&xs, Exp));
        assert_eq!(&ours[..2], &[1.0, 1.0], "{}", isa.name());
        assert!(
            ours[2..].iter().all(|&y| y == 0.0),
            "{}: {ours:?}",
            isa.name()
        );
    }
}

/// Differences of every kind of scale, ties and signs.
fn differences() -> Vec<f64> {
    let mut u = uniform(11);
    let mut d: Vec<f64> = (0..30_000).map(|_| 8.0 * u() - 4.0).collect();
    // Up to 2^900 (c |d| stays finite, as units.rs guarantees for the sweep).
    d.extend((0..10_000).map(|_| (u() - 0.5) * (u() * 1800.0 - 900.0).exp2()));
    d.extend([
        0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e300, -1e300, 38.6, -38.6, 40.0,
    ]);
    d
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn check_kernel<K: VectorKernel>(name: &str, kernel: &K, d: &[f64]) {
    for slope in [false, true] {
        let model = run(Isa::PortableFused, Map(d, Eval(kernel, slope)));
        assert!(model.iter().all(|v| v.is_finite()), "{name}");
        for isa in available() {
            let got = run(isa, Map(d, Eval(kernel, slope)));
            if isa == Isa::Portable && !PORTABLE_FUSES {
                let close = got.iter().zip(&model).all(|(x, y)| {
                    (x - y).abs() <= 1e-15 * y.abs().max(f64::MIN_POSITIVE / f64::EPSILON)
                });
                assert!(close, "{name} on {}", isa.name());
            } else {
                assert!(same_bits(&got, &model), "{name} on {}", isa.name());
            }
        }
    }
}

#[test]
fn every_instruction_set_gives_the_models_bits() {
    let d = differences();
    let arguments = exp_arguments();
    let exp_model = run(Isa::PortableFused, Map(&arguments, Exp));
    for isa in available().filter(|&isa| isa != Isa::Portable || PORTABLE_FUSES) {
        assert!(same_bits(&run(isa, Map(&arguments, Exp)), &exp_model));
    }
    for c in [1e-3, 0.5, 2.0, 1e3] {
        check_kernel("rbf", &Rbf(-c), &d);
        check_kernel("laplacian", &Laplacian(-c), &d);
        check_kernel("imq", &Imq(-c), &d);
    }
    check_kernel("energy", &Energy, &d);
    check_kernel("mean of rbf", &Mean(vec![Rbf(-0.5), Rbf(-8.0)]), &d);
}

#[test]
fn vector_kernels_match_the_scalar_formulas() {
    use crate::kernel::{Kernel, KernelKind};
    let d = differences();
    for isa in available() {
        for (kind, s) in [
            (KernelKind::Rbf, 0.7),
            (KernelKind::Laplacian, 0.7),
            (KernelKind::Imq, 0.7),
            (KernelKind::Energy, 1.0),
        ] {
            let scalar = Kernel::new(kind, &[s]).unwrap();
            let c = -scalar.scales()[0];
            let (k, slope) = match kind {
                KernelKind::Rbf => (
                    run(isa, Map(&d, Eval(&Rbf(c), false))),
                    run(isa, Map(&d, Eval(&Rbf(c), true))),
                ),
                KernelKind::Laplacian => (
                    run(isa, Map(&d, Eval(&Laplacian(c), false))),
                    run(isa, Map(&d, Eval(&Laplacian(c), true))),
                ),
                KernelKind::Imq => (
                    run(isa, Map(&d, Eval(&Imq(c), false))),
                    run(isa, Map(&d, Eval(&Imq(c), true))),
                ),
                KernelKind::Energy => (
                    run(isa, Map(&d, Eval(&Energy, false))),
                    run(isa, Map(&d, Eval(&Energy, true))),
                ),
            };
            let scale = if kind == KernelKind::Rbf { 2.0 } else { 1.0 };
            for (i, &x) in d.iter().enumerate() {
                let (k0, dk0) = scalar.value_and_slope(x);
                // The exponent a is rounded twice on each side (ordered differently): up to 2 ulp of
                // a each, which e^a amplifies by |a|.
                let a = match kind {
                    KernelKind::Rbf => x * x * -c,
                    _ => x.abs() * -c,
                };
                // Values within 2 ulp, slopes (a few more roundings each way) within 6.
                let amplified = 4.5e-16 * a.min(1e3);
                let close = |v: f64, w: f64, ulps: f64| {
                    (v - w).abs() <= (ulps * 2.3e-16 + amplified) * w.abs() + 1e-300
                };
                assert!(close(k[i], k0, 2.0), "{kind:?} k({x:e}) {} vs {k0}", k[i]);
                let dk = scale * slope[i];
                assert!(close(dk, dk0, 6.0), "{kind:?} k'({x:e}) {dk} vs {dk0}");
            }
        }
    }
}
