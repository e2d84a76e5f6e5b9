//! The vector sweep on every instruction set against the fused portable model (bit for bit) and
//! against a scalar all-pairs sum with libm's exp, on random and adversarial inputs; and against
//! itself on 1, 2 and 3 threads.

use super::*;
use crate::kernel::KernelKind;
use crate::simd::tests::{uniform, ALL as ISAS};
use crate::simd::{Isa, PORTABLE_FUSES};
use crate::{prepare, set_num_threads, Bandwidth, Input, Prepared};

const KINDS: [KernelKind; 4] = [
    KernelKind::Rbf,
    KernelKind::Laplacian,
    KernelKind::Imq,
    KernelKind::Energy,
];

struct Case {
    name: &'static str,
    rewards: Vec<f64>,
    bins: Vec<i64>,
    groups: Option<Vec<i64>>,
    bandwidth: Bandwidth,
}

fn case(name: &'static str, rewards: Vec<f64>, bins: Vec<i64>, bandwidth: f64) -> Case {
    Case {
        name,
        rewards,
        bins,
        groups: None,
        bandwidth: Bandwidth::Fixed(vec![bandwidth]),
    }
}

/// Bins of sizes around multiples of the vector width and the tile (masks, cuts), and the
/// inputs that stress the kernels: ties, huge and tiny distances, subnormal kernel values, large
/// offsets, scales that need other working units, several bandwidths, groups.
fn cases() -> Vec<Case> {
    let mut u = uniform(3);
    let with_sizes = |sizes: &[usize]| -> Vec<i64> {
        (0..sizes.len())
            .flat_map(|b| std::iter::repeat_n(b as i64, sizes[b]))
            .collect()
    };
    let segments = with_sizes(&[1, 2, 7, 8, 9, 15, 16, 17, 127, 128, 129, 300]);
    let random: Vec<f64> = segments.iter().map(|&b| u() + 0.3 * b as f64).collect();
    // The adversarial cases: smaller, still with segments across vectors and tiles.
    let bins = with_sizes(&[1, 2, 7, 9, 16, 17, 129]);
    let n = bins.len();
    let labels: Vec<i64> = (0..500).map(|_| (u() * 13.0) as i64).collect();
    let mut cases = vec![
        case("segments", random, segments, 0.5),
        case(
            "ties and signed zeros",
            (0..n).map(|i| [0.0, -0.0, 1.0, 2.0][i % 4]).collect(),
            bins.clone(),
            1.0,
        ),
        case(
            "huge distances",
            (0..n).map(|i| i as f64 * 1e3).collect(),
            bins.clone(),
            1.0,
        ),
        case(
            "subnormal kernel values",
            (0..n).map(|i| (i % 2) as f64 * 38.5 + 1e-3 * u()).collect(),
            bins.clone(),
            1.0,
        ),
        case(
            "tiny distances",
            (0..n).map(|i| 1.0 + i as f64 * f64::EPSILON).collect(),
            bins.clone(),
            1.0,
        ),
        case(
            "1e6 offsets",
            (0..n).map(|_| 1e6 + 0.1 * u()).collect(),
            bins.clone(),
            0.05,
        ),
        case(
            "tiny scale",
            (0..n).map(|_| 1e-300 * u()).collect(),
            bins.clone(),
            3e-301,
        ),
        case(
            "huge scale",
            (0..n).map(|_| 1e300 * u()).collect(),
            bins.clone(),
            3e299,
        ),
    ];
    cases.push(Case {
        name: "groups, several bandwidths",
        rewards: labels.iter().map(|&b| u() + 0.5 * b as f64).collect(),
        groups: Some((0..500).map(|_| (u() * 2.0) as i64).collect()),
        bins: labels,
        bandwidth: Bandwidth::Fixed(vec![0.3, 1.0, 3.0]),
    });
    cases
}

fn prepared(case: &Case, kind: KernelKind) -> Prepared {
    let mut input = Input::new(&case.rewards, &case.bins);
    if let Some(groups) = &case.groups {
        input = input.with_groups(groups);
    }
    prepare(&input, kind, &case.bandwidth).unwrap()
}

/// Random weights W (G, M, M), symmetric in the bins.
fn weights(layout: &Layout) -> Vec<f64> {
    let (g, m) = (layout.num_groups, layout.num_bins);
    let mut u = uniform(5);
    let mut w = vec![0.0; g * m * m];
    for c in 0..g {
        for p in 0..m {
            for q in p..m {
                let v = 2.0 * u() - 1.0;
                w[(c * m + p) * m + q] = v;
                w[(c * m + q) * m + p] = v;
            }
        }
    }
    w
}

/// (S, gradient) by a scalar sum over all pairs with libm's exp, summed with compensation (so
/// that the reference is accurate even for many equal terms), and per entry a bound on the
/// difference float64 allows the sweep: 1e-13 of the sum of the terms' magnitudes, plus the
/// amplification of the exponent's rounding by |a| in e^a.
struct Reference {
    sums: Vec<f64>,
    grad: Vec<f64>,
    sums_tol: Vec<f64>,
    grad_tol: Vec<f64>,
}

/// A Neumaier-compensated sum.
#[derive(Clone, Copy, Default)]
struct Exact(f64, f64);

impl Exact {
    fn add(&mut self, x: f64) {
        let t = self.0 + x;
        self.1 += if self.0.abs() >= x.abs() {
            (self.0 - t) + x
        } else {
            (x - t) + self.0
        };
        self.0 = t;
    }
    fn value(self) -> f64 {
        self.0 + self.1
    }
}

fn reference(p: &Prepared, w: &[f64]) -> Reference {
    let (layout, kernel) = (&p.layout, &p.kernel);
    let (m, n) = (layout.num_bins, layout.len());
    let (mut sums, mut grad) = (vec![Exact::default(); w.len()], vec![Exact::default(); n]);
    let mut r = Reference {
        sums: Vec::new(),
        grad: Vec::new(),
        sums_tol: vec![0.0; w.len()],
        grad_tol: vec![0.0; n],
    };
    let cells = layout.cells();
    let exponent = |d: f64| -> f64 {
        let c = kernel.scales().iter().copied().fold(0.0, f64::max);
        match kernel.kind() {
            KernelKind::Rbf => d * d * c,
            KernelKind::Laplacian => d.abs() * c,
            _ => 0.0,
        }
    };
    for g in 0..layout.num_groups {
        let rows = layout.group(g);
        for i in rows.clone() {
            for j in i + 1..rows.end {
                let d = layout.values[i] - layout.values[j];
                let (k, dk) = kernel.value_and_slope(d);
                let (ci, cj) = (cells[i], cells[j]);
                let base = ci - ci % m;
                let (a, b) = (ci * m + cj - base, cj * m + ci - base);
                let bound = |x: f64| x.abs() * (1e-13 + 4.5e-16 * exponent(d)) + 1e-320;
                for cell in [a, b] {
                    sums[cell].add(k);
                    r.sums_tol[cell] += bound(k);
                }
                let slope = 2.0 * w[a] * dk;
                grad[i].add(slope);
                grad[j].add(-slope);
                r.grad_tol[i] += bound(slope);
                r.grad_tol[j] += bound(slope);
            }
        }
    }
    let k0 = kernel.value(0.0);
    for (cell, count) in layout.counts().into_iter().enumerate() {
        sums[cell * m + cell % m].add(count as f64 * k0);
        r.sums_tol[cell * m + cell % m] += 1e-13 * (count as f64 * k0).abs();
    }
    r.sums = sums.into_iter().map(Exact::value).collect();
    r.grad = grad.into_iter().map(Exact::value).collect();
    r
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn assert_close(what: &str, got: &[f64], expected: &[f64], tol: &[f64]) {
    for (i, ((g, e), t)) in got.iter().zip(expected).zip(tol).enumerate() {
        assert!(
            (g - e).abs() <= *t,
            "{what}[{i}]: {g:e} vs {e:e} (tolerance {t:e})"
        );
    }
}

#[test]
fn every_instruction_set_matches_the_model_and_a_scalar_sweep() {
    for case in cases() {
        for kind in KINDS {
            let p = prepared(&case, kind);
            let w = weights(&p.layout);
            let expected = reference(&p, &w);
            let model = sweep_on(Isa::PortableFused, &p.layout, &p.kernel, Some(&w)).unwrap();
            for isa in ISAS.into_iter().filter(|isa| isa.available()) {
                let what = format!("{} {kind:?} on {}", case.name, isa.name());
                let (sums, grad) = sweep_on(isa, &p.layout, &p.kernel, Some(&w)).unwrap();
                let grad = grad.unwrap();
                assert_close(
                    &format!("{what}: S"),
                    &sums,
                    &expected.sums,
                    &expected.sums_tol,
                );
                assert_close(
                    &format!("{what}: grad"),
                    &grad,
                    &expected.grad,
                    &expected.grad_tol,
                );
                if isa != Isa::Portable || PORTABLE_FUSES {
                    assert_eq!(bits(&sums), bits(&model.0), "{what}: S");
                    assert_eq!(bits(&grad), bits(model.1.as_ref().unwrap()), "{what}");
                }
                // Without weights: the same kernel sums, bit for bit.
                let (alone, none) = sweep_on(isa, &p.layout, &p.kernel, None).unwrap();
                assert!(none.is_none());
                assert_eq!(bits(&alone), bits(&sums), "{what}: S without weights");
            }
        }
    }
}

#[test]
fn every_kernel_gives_the_same_bits_on_1_2_and_3_threads() {
    let case = &cases()[0];
    for kind in KINDS {
        let p = prepared(case, kind);
        let w = weights(&p.layout);
        let run = |threads: usize| {
            set_num_threads(threads);
            let (sums, grad) = sweep(&p.layout, &p.kernel, Some(&w)).unwrap();
            (bits(&sums), bits(&grad.unwrap()))
        };
        let one = run(1);
        assert_eq!(one, run(2), "{kind:?}");
        assert_eq!(one, run(3), "{kind:?}");
    }
    set_num_threads(0);
}
