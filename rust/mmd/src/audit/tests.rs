//! The audit methods against the core's brute force and against each other.

use super::*;
use crate::{pairwise_bin_mmd, prepare, Input, Options};

/// The audit of in-memory rewards, as the bindings call it.
fn run(
    values: &[f64],
    bins: &[i64],
    groups: Option<&[i64]>,
    m: usize,
    o: &AuditOptions,
    method: Method,
) -> Result<AuditResult> {
    let (values, bins) = (values.to_vec(), bins.to_vec());
    let groups = groups.map(|g| g.to_vec());
    let mut input = Input::new(&values, &bins).with_num_bins(m);
    if let Some(g) = &groups {
        input = input.with_groups(g);
    }
    audit(&input, o, method)
}

fn data(n: usize, m: usize, groups: usize, seed: u64) -> (Vec<f64>, Vec<i64>, Vec<i64>) {
    let mut rng = Rng::new(seed, 0);
    let bins: Vec<i64> = (0..n).map(|_| rng.below(m as u64) as i64).collect();
    let groups: Vec<i64> = (0..n).map(|_| rng.below(groups as u64) as i64).collect();
    // Bin-dependent shift, and some exact ties.
    let values = bins
        .iter()
        .map(|&b| 3.0 + 0.1 * b as f64 + (rng.uniform() * 8.0).round() / 4.0 + rng.uniform() * 0.3)
        .collect();
    (values, bins, groups)
}

fn options(
    kernel: KernelKind,
    bandwidth: Bandwidth,
    estimator: Estimator,
    permutations: usize,
) -> AuditOptions {
    AuditOptions {
        kernel,
        bandwidth,
        estimator,
        permutations,
        seed: 11,
        pair_tests: PairTests::Raw,
    }
}

fn core_matrix(
    values: &[f64],
    bins: &[i64],
    groups: &[i64],
    m: usize,
    o: &AuditOptions,
) -> (f64, Vec<f64>) {
    let (values, bins, groups) = (values.to_vec(), bins.to_vec(), groups.to_vec());
    let input = Input::new(&values, &bins)
        .with_groups(&groups)
        .with_num_bins(m);
    let core = Options {
        kernel: o.kernel,
        bandwidth: o.bandwidth.clone(),
        estimator: o.estimator,
        ..Options::default()
    };
    let value = pairwise_bin_mmd(&input, &core).unwrap().value.unwrap();
    let matrix = Options {
        reduction: Reduction::None,
        ..core
    };
    (
        value,
        pairwise_bin_mmd(&input, &matrix).unwrap().matrix.unwrap(),
    )
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= tolerance
}

#[test]
fn scan_equals_brute_force() {
    let (values, bins, groups) = data(700, 5, 2, 1);
    for (kernel, bandwidth) in [
        (KernelKind::Energy, Bandwidth::Fixed(vec![1.0])),
        (KernelKind::Laplacian, Bandwidth::Fixed(vec![0.05, 0.7])),
        (KernelKind::Laplacian, Bandwidth::Median),
    ] {
        for estimator in [Estimator::Biased, Estimator::Unbiased] {
            let o = options(kernel, bandwidth.clone(), estimator, 0);
            let result = run(&values, &bins, Some(&groups), 5, &o, Method::Scan).unwrap();
            let (value, matrix) = core_matrix(&values, &bins, &groups, 5, &o);
            assert!(
                close(result.statistic, value, 1e-12),
                "{kernel:?} {estimator:?}: {} vs {value}",
                result.statistic
            );
            for (a, b) in result.group_matrices.iter().zip(&matrix) {
                assert!(close(*a, *b, 1e-12), "{a} vs {b}");
            }
            assert_eq!(result.method, Method::Scan);
            assert!(result.pvalue.is_nan() && result.error_bound == 0.0);
        }
    }
}

#[test]
fn laplacian_scan_rebases_without_overflow() {
    // A range of 2000 bandwidths forces several rebases of the running sums.
    let values: Vec<f64> = (0..400)
        .map(|i| (i as f64 * 0.37).sin() * 1000.0 + i as f64)
        .collect();
    let bins: Vec<i64> = (0..400).map(|i| (i % 3) as i64).collect();
    let groups = vec![0i64; 400];
    let o = options(
        KernelKind::Laplacian,
        Bandwidth::Fixed(vec![0.5]),
        Estimator::Biased,
        0,
    );
    let result = run(&values, &bins, None, 3, &o, Method::Scan).unwrap();
    let (value, _) = core_matrix(&values, &bins, &groups, 3, &o);
    assert!(result.statistic.is_finite() && close(result.statistic, value, 1e-12));
}

#[test]
fn exact_permutations_are_seeded_and_thread_independent() {
    let (mut values, bins, groups) = data(120, 3, 2, 2);
    values
        .iter_mut()
        .zip(&bins)
        .for_each(|(v, &b)| *v += 0.5 * b as f64);
    let o = options(
        KernelKind::Rbf,
        Bandwidth::Fixed(vec![0.5]),
        Estimator::Biased,
        60,
    );
    let exact = || run(&values, &bins, Some(&groups), 3, &o, Method::Exact).unwrap();
    crate::set_num_threads(1);
    let one = exact();
    crate::set_num_threads(2);
    let two = exact();
    crate::set_num_threads(0);
    assert_eq!(one.null_statistics, two.null_statistics);
    assert_eq!(
        format!("{:?}", one.pair_pvalues),
        format!("{:?}", two.pair_pvalues)
    );
    let (value, _) = core_matrix(&values, &bins, &groups, 3, &o);
    assert!(close(one.statistic, value, 1e-15) && close(one.test_statistic, value, 1e-12));
    let hits = one
        .null_statistics
        .iter()
        .filter(|&&t| t >= one.test_statistic - 1e-12)
        .count();
    assert_eq!(one.pvalue, (1 + hits) as f64 / 61.0);
    // A shift of 0.6 per bin is strong at this size.
    assert!(one.pvalue < 0.05, "{}", one.pvalue);
}

#[test]
fn scan_permutations_keep_bin_sizes_and_match_exact_in_distribution() {
    // Under a relabelling the null statistics of scan and exact come from the same distribution;
    // with the same data their means must agree within sampling error.
    let (values, bins, _) = data(300, 3, 1, 3);
    let o = options(
        KernelKind::Laplacian,
        Bandwidth::Fixed(vec![0.5]),
        Estimator::Biased,
        400,
    );
    let scan = run(&values, &bins, None, 3, &o, Method::Scan).unwrap();
    let exact = run(&values, &bins, None, 3, &o, Method::Exact).unwrap();
    assert!(close(scan.test_statistic, exact.test_statistic, 1e-12));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd =
        |v: &[f64]| (v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    let (a, b) = (&scan.null_statistics, &exact.null_statistics);
    assert!(
        (mean(a) - mean(b)).abs() < 5.0 * sd(b) / (a.len() as f64).sqrt(),
        "{} {}",
        mean(a),
        mean(b)
    );
}

#[test]
fn grid_is_within_its_bound_and_median_within_a_step() {
    let (values, bins, groups) = data(3000, 4, 2, 4);
    let cells: Vec<i64> = bins.iter().zip(&groups).map(|(b, g)| g * 4 + b).collect();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let spec = GridSpec::new(low, high, 4097, 257, 1 << 16).unwrap();
    let mut sketch = GridSketch::new(spec, 8).unwrap();
    sketch.add(&values, &cells).unwrap();
    for kernel in [KernelKind::Rbf, KernelKind::Imq] {
        for estimator in [Estimator::Biased, Estimator::Unbiased] {
            let o = options(kernel, Bandwidth::Median, estimator, 20);
            let result = audit_sketch(&sketch, 2, 4, &o).unwrap();
            let exact_median = crate::median_bandwidth(&values).unwrap();
            assert!((result.bandwidths[0] - exact_median).abs() <= result.bandwidth_error);
            let fixed = options(
                kernel,
                Bandwidth::Fixed(result.bandwidths.clone()),
                estimator,
                0,
            );
            let (value, matrix) = core_matrix(&values, &bins, &groups, 4, &fixed);
            let error = (result.statistic - value).abs();
            eprintln!(
                "{kernel:?} {estimator:?}: value {value} error {error} bound {}",
                result.error_bound
            );
            assert!(
                error <= result.error_bound,
                "{kernel:?}: error {error} > bound {}",
                result.error_bound
            );
            assert!(result.error_bound < 1e-3 * value.abs());
            for (a, b) in result.group_matrices.iter().zip(&matrix) {
                assert!(close(*a, *b, result.error_bound));
            }
        }
    }
}

#[test]
fn sketches_merge_exactly() {
    let (values, bins, _) = data(1000, 3, 1, 5);
    let spec = GridSpec::new(0.0, 10.0, 1025, 65, 1025).unwrap();
    let mut whole = GridSketch::new(spec, 3).unwrap();
    whole.add(&values, &bins).unwrap();
    // What the engines do with the arrays of chunks, files or partitions: add them.
    let mut parts = GridSketch::new(spec, 3).unwrap();
    for (v, b) in values.chunks(137).zip(bins.chunks(137)) {
        let mut part = GridSketch::new(spec, 3).unwrap();
        part.add(v, b).unwrap();
        let add = |a: &mut Vec<u64>, b: &[u64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut parts.fine, &part.fine);
        add(&mut parts.coarse, &part.coarse);
        add(&mut parts.pooled, &part.pooled);
        add(&mut parts.counts, &part.counts);
    }
    assert_eq!(whole, parts);
    let rebuilt = GridSketch::from_parts(
        spec,
        3,
        whole.fine.clone(),
        whole.coarse.clone(),
        whole.pooled.clone(),
        whole.counts.clone(),
    );
    assert_eq!(rebuilt.unwrap(), whole);
    let mut broken = whole.coarse.clone();
    broken[0] += 1;
    assert!(GridSketch::from_parts(
        spec,
        3,
        whole.fine.clone(),
        broken,
        whole.pooled.clone(),
        whole.counts.clone()
    )
    .is_err());
    assert!(whole.add(&[11.0], &[0]).is_err());
}

#[test]
fn grid_permutation_tables_keep_margins() {
    let (values, bins, groups) = data(2000, 4, 2, 6);
    let cells: Vec<i64> = bins.iter().zip(&groups).map(|(b, g)| g * 4 + b).collect();
    let spec = GridSpec::new(0.0, 10.0, 1025, 129, 1025).unwrap();
    let mut sketch = GridSketch::new(spec, 8).unwrap();
    sketch.add(&values, &cells).unwrap();
    let mut rng = Rng::new(1, 1);
    let table = grid::permuted_table_for_tests(&mut rng, &sketch);
    for cell in 0..8 {
        assert_eq!(
            table[cell * 129..(cell + 1) * 129].iter().sum::<u64>(),
            sketch.counts[cell]
        );
    }
    for g in 0..2 {
        for k in 0..129 {
            let total = |t: &[u64]| (0..4).map(|p| t[(g * 4 + p) * 129 + k]).sum::<u64>();
            assert_eq!(total(&table), total(&sketch.coarse));
        }
    }
}

#[test]
fn refuses_bad_input() {
    let o = |kernel, estimator| options(kernel, Bandwidth::Fixed(vec![1.0]), estimator, 0);
    let biased = o(KernelKind::Rbf, Estimator::Biased);
    let message = |values: &[f64], bins: &[i64], m: usize, o: &AuditOptions, method: Method| {
        run(values, bins, None, m, o, method)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        message(&[], &[], 2, &biased, Method::Exact),
        "rewards is empty"
    );
    assert_eq!(
        message(&[1.0, 2.0], &[0, 2], 2, &biased, Method::Exact),
        "bins[1] = 2 is out of range [0, 2)"
    );
    assert_eq!(
        message(&[1.0, 2.0], &[0, 1], 1, &biased, Method::Exact),
        "num_bins must be >= 2, got 1"
    );
    let linear = o(KernelKind::Rbf, Estimator::Linear);
    assert!(message(&[1.0, 2.0], &[0, 1], 2, &linear, Method::Exact).contains("linear"));
    assert!(message(&[1.0, 2.0], &[0, 1], 2, &biased, Method::Scan).contains("scan method"));
    assert!(message(&[1.0, 2.0], &[0, 1], 2, &biased, Method::Grid).contains("GridSketch"));
}

#[test]
fn scan_with_many_bins_equals_brute_force() {
    // M = 37 > 32 takes the general (not fixed-width) update.
    let (values, bins, groups) = data(900, 37, 1, 8);
    for kernel in [KernelKind::Energy, KernelKind::Laplacian] {
        let o = options(kernel, Bandwidth::Fixed(vec![0.4]), Estimator::Biased, 3);
        let result = run(&values, &bins, None, 37, &o, Method::Scan).unwrap();
        let (value, _) = core_matrix(&values, &bins, &groups, 37, &o);
        assert!(
            close(result.statistic, value, 1e-12),
            "{kernel:?}: {} vs {value}",
            result.statistic
        );
    }
}

/// The rewards of `data` with one bin of one row (not computable for the unbiased estimator).
fn with_a_singleton(
    n: usize,
    m: usize,
    groups: usize,
    seed: u64,
) -> (Vec<f64>, Vec<i64>, Vec<i64>) {
    let (values, mut bins, groups) = data(n, m, groups, seed);
    bins.iter_mut().for_each(|b| *b = (*b).min(m as i64 - 2));
    bins[0] = m as i64 - 1;
    (values, bins, groups)
}

fn prepared(
    values: &[f64],
    bins: &[i64],
    groups: &[i64],
    m: usize,
    o: &AuditOptions,
) -> crate::Prepared {
    let (values, bins, groups) = (values.to_vec(), bins.to_vec(), groups.to_vec());
    let input = Input::new(&values, &bins)
        .with_groups(&groups)
        .with_num_bins(m);
    prepare(&input, o.kernel, &o.bandwidth).unwrap()
}

/// |T_full - T_global| <= 1e-12 |T| on every permutation, |T| at least the run's mean |T_b| (the
/// unbiased statistic is centred at 0 under relabelling, so a relative error to T_b alone would be
/// unbounded where T_b crosses 0; for the biased one the two scales agree), or `floor`.
fn assert_relatively_close(pairs: &[(f64, f64)], what: &str, floor: f64) {
    assert!(!pairs.is_empty());
    let typical = pairs.iter().map(|p| p.0.abs()).sum::<f64>() / pairs.len() as f64;
    for (b, &(full, global)) in pairs.iter().enumerate() {
        assert!(
            (full - global).abs() <= (1e-12 * full.abs().max(typical)).max(floor),
            "{what}, permutation {b}: O(n M) {full} vs O(n) {global} (typical |T| {typical})"
        );
    }
}

#[test]
fn the_global_pass_equals_the_full_sums_on_every_permutation() {
    // Groups, bins not computable for the unbiased estimator, several bandwidths, ties.
    let (values, bins, groups) = with_a_singleton(900, 6, 3, 21);
    let estimators = [Estimator::Biased, Estimator::Unbiased];
    for (kernel, bandwidth) in [
        (KernelKind::Energy, Bandwidth::Fixed(vec![1.0])),
        (KernelKind::Laplacian, Bandwidth::Fixed(vec![0.01, 0.4])),
        (KernelKind::Rbf, Bandwidth::Fixed(vec![0.3])),
        (KernelKind::Imq, Bandwidth::Median),
    ] {
        for estimator in estimators {
            let o = options(kernel, bandwidth.clone(), estimator, 0);
            let unbiased = estimator == Estimator::Unbiased;
            let prepared = prepared(&values, &bins, &groups, 6, &o);
            let what = format!("{kernel:?} {estimator:?}");
            let exact = brute::both_statistics_for_tests(&prepared, unbiased, 4, 30);
            assert_relatively_close(&exact, &format!("exact {what}"), 0.0);
            if matches!(kernel, KernelKind::Energy | KernelKind::Laplacian) {
                let scan = scan::both_statistics_for_tests(&prepared, unbiased, 4, 30);
                assert_relatively_close(&scan, &format!("scan {what}"), 0.0);
            }
        }
    }
}

#[test]
fn the_grid_global_sums_equal_its_full_sums_on_every_permutation() {
    // Both paths take their sums from the same spectra but round differently after the FFT, by a
    // few ulps of the kernel mean (k(0) = 1; see grid's error bound): 1e-12 of T while T, about
    // 1 / (rows per bin), stays above ~1e-3, and at most 64 ulps below that.
    let (values, bins, groups) = with_a_singleton(600, 5, 2, 22);
    let cells: Vec<i64> = bins.iter().zip(&groups).map(|(b, g)| g * 5 + b).collect();
    let spec = GridSpec::new(2.0, 8.0, 1025, 257, 1025).unwrap();
    let mut sketch = GridSketch::new(spec, 10).unwrap();
    sketch.add(&values, &cells).unwrap();
    for kind in [KernelKind::Rbf, KernelKind::Imq] {
        for unbiased in [false, true] {
            let evaluator = Evaluator {
                counts: &sketch.counts,
                num_groups: 2,
                num_bins: 5,
                unbiased,
                k0: 1.0,
            };
            let pairs = grid::both_statistics_for_tests(&sketch, &evaluator, kind, &[0.4], 6, 30);
            let what = format!("grid {kind:?} unbiased={unbiased}");
            assert_relatively_close(&pairs, &what, 64.0 * f64::EPSILON);
        }
    }
}

/// Every field of a result, as text (NaN equal to NaN), for bitwise comparisons.
fn bits(result: &AuditResult) -> String {
    format!("{result:?}")
}

#[test]
fn pair_tests_leave_the_global_test_unchanged_at_any_thread_count() {
    let (mut values, bins, groups) = with_a_singleton(500, 5, 2, 23);
    values
        .iter_mut()
        .zip(&bins)
        .for_each(|(v, &b)| *v += 0.05 * b as f64);
    let cells: Vec<i64> = bins.iter().zip(&groups).map(|(b, g)| g * 5 + b).collect();
    let spec = GridSpec::new(2.0, 9.0, 1025, 257, 1025).unwrap();
    let mut sketch = GridSketch::new(spec, 10).unwrap();
    sketch.add(&values, &cells).unwrap();
    for estimator in [Estimator::Biased, Estimator::Unbiased] {
        let runs = |tests: PairTests| -> Vec<AuditResult> {
            let mut out = Vec::new();
            for (kernel, method) in [
                (KernelKind::Energy, Method::Scan),
                (KernelKind::Laplacian, Method::Scan),
                (KernelKind::Rbf, Method::Exact),
                (KernelKind::Rbf, Method::Grid),
            ] {
                let o = AuditOptions {
                    pair_tests: tests,
                    ..options(kernel, Bandwidth::Fixed(vec![0.5]), estimator, 40)
                };
                out.push(if method == Method::Grid {
                    audit_sketch(&sketch, 2, 5, &o).unwrap()
                } else {
                    run(&values, &bins, Some(&groups), 5, &o, method).unwrap()
                });
            }
            out
        };
        let mut by_threads = Vec::new();
        for threads in [1, 2, 3] {
            crate::set_num_threads(threads);
            by_threads.push([PairTests::Off, PairTests::Raw, PairTests::MaxT].map(runs));
        }
        crate::set_num_threads(0);
        for runs in &by_threads[1..] {
            for (a, b) in runs.iter().flatten().zip(by_threads[0].iter().flatten()) {
                assert_eq!(bits(a), bits(b));
            }
        }
        let [off, raw, max_t] = &by_threads[0];
        for ((off, raw), max_t) in off.iter().zip(raw).zip(max_t) {
            let what = format!("{:?} {estimator:?}", raw.method);
            assert_eq!(off.null_statistics, raw.null_statistics, "{what}");
            assert_eq!(off.pvalue.to_bits(), raw.pvalue.to_bits(), "{what}");
            assert_eq!(
                bits(&AuditResult {
                    pair_tests: PairTests::Raw,
                    ..max_t.clone()
                }),
                bits(&AuditResult {
                    pair_pvalues_max_t: max_t.pair_pvalues_max_t.clone(),
                    ..raw.clone()
                })
            );
            assert!(off.pair_pvalues.iter().all(|p| p.is_nan()), "{what}");
            assert!(raw.pair_pvalues_max_t.iter().all(|p| p.is_nan()), "{what}");
            assert_eq!(off.pair_tests, PairTests::Off);
            // maxT: at least the raw p-value, at most 1, and a p-value of its own for every pair.
            for (p, a) in raw.pair_pvalues.iter().zip(&max_t.pair_pvalues_max_t) {
                assert_eq!(p.is_nan(), a.is_nan());
                assert!(p.is_nan() || (p <= a && *a <= 1.0), "{what}: {p} {a}");
            }
        }
    }
}

#[test]
fn the_global_pvalue_is_that_of_the_full_statistics() {
    // The p-value from the O(n) statistics counts what the O(n M) ones count: same ranks.
    let (mut values, bins, groups) = data(800, 4, 2, 24);
    values
        .iter_mut()
        .zip(&bins)
        .for_each(|(v, &b)| *v += 0.02 * b as f64);
    for (kernel, method) in [
        (KernelKind::Energy, Method::Scan),
        (KernelKind::Rbf, Method::Exact),
    ] {
        let o = options(kernel, Bandwidth::Fixed(vec![0.5]), Estimator::Biased, 200);
        let result = run(&values, &bins, Some(&groups), 4, &o, method).unwrap();
        let prepared = prepared(&values, &bins, &groups, 4, &o);
        let both = match method {
            Method::Scan => scan::both_statistics_for_tests(&prepared, false, o.seed, 200),
            _ => brute::both_statistics_for_tests(&prepared, false, o.seed, 200),
        };
        let full: Vec<f64> = both.iter().map(|b| b.0).collect();
        let observed = result.test_statistic;
        let hits = full
            .iter()
            .filter(|&&t| t >= observed - 1e-11 * observed.abs().max(1.0))
            .count();
        assert_eq!(result.pvalue, (1 + hits) as f64 / 201.0, "{kernel:?}");
        assert!(result.pvalue > 0.0 && result.pvalue < 1.0);
    }
}

#[test]
fn max_t_finds_the_planted_bin_and_only_it() {
    // Six bins of one law but the last, shifted: its pairs are significant after adjustment, the
    // others not.
    let mut rng = Rng::new(25, 0);
    let bins: Vec<i64> = (0..2400).map(|i| (i % 6) as i64).collect();
    let values: Vec<f64> = bins
        .iter()
        .map(|&b| rng.uniform() + if b == 5 { 0.3 } else { 0.0 })
        .collect();
    let o = AuditOptions {
        pair_tests: PairTests::MaxT,
        ..options(
            KernelKind::Energy,
            Bandwidth::Fixed(vec![1.0]),
            Estimator::Biased,
            300,
        )
    };
    let result = run(&values, &bins, None, 6, &o, Method::Scan).unwrap();
    let m = 6;
    for p in 0..m {
        for q in p + 1..m {
            let adjusted = result.pair_pvalues_max_t[p * m + q];
            assert_eq!(adjusted <= 0.05, q == 5, "pair ({p}, {q}): {adjusted}");
        }
    }
}
