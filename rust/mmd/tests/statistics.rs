//! The core against a direct brute force, finite differences, and itself under other thread counts.

use crm_mmd::*;

mod common;

/// Rewards in `bins` bins shifted by 0.5 per bin, and two groups.
fn batch(n: usize, bins: i64, seed: u64) -> (Vec<f64>, Vec<i64>, Vec<i64>) {
    let (rewards, labels) = common::batch(n, bins as usize, seed, 0.5);
    let mut uniform = common::uniform_stream(seed ^ 0x5eed);
    let groups: Vec<i64> = (0..n).map(|_| (uniform() * 2.0) as i64).collect();
    (rewards, labels, groups)
}

/// Biased rbf MMD^2 of every pair, one pair at a time, mean over pairs and groups.
fn brute_force(rewards: &[f64], bins: &[i64], groups: &[i64], m: i64, s: f64) -> f64 {
    let k = |a: f64, b: f64| (-(a - b) * (a - b) / (2.0 * s * s)).exp();
    let mean_k = |x: &[f64], y: &[f64]| {
        x.iter()
            .flat_map(|&a| y.iter().map(move |&b| k(a, b)))
            .sum::<f64>()
            / (x.len() * y.len()) as f64
    };
    let mut per_group = Vec::new();
    for g in 0..=*groups.iter().max().unwrap() {
        let sample = |p: i64| -> Vec<f64> {
            (0..rewards.len())
                .filter(|&i| bins[i] == p && groups[i] == g)
                .map(|i| rewards[i])
                .collect()
        };
        let mut values = Vec::new();
        for p in 0..m {
            for q in p + 1..m {
                let (x, y) = (sample(p), sample(q));
                if !x.is_empty() && !y.is_empty() {
                    values.push(mean_k(&x, &x) + mean_k(&y, &y) - 2.0 * mean_k(&x, &y));
                }
            }
        }
        if !values.is_empty() {
            per_group.push(values.iter().sum::<f64>() / values.len() as f64);
        }
    }
    per_group.iter().sum::<f64>() / per_group.len() as f64
}

#[test]
fn biased_rbf_matches_brute_force() {
    let (rewards, bins, groups) = batch(300, 7, 1);
    let options = Options {
        bandwidth: Bandwidth::Fixed(vec![0.8]),
        ..Options::default()
    };
    let input = Input::new(&rewards, &bins).with_groups(&groups);
    let value = pairwise_bin_mmd(&input, &options).unwrap().value.unwrap();
    let expected = brute_force(&rewards, &bins, &groups, 7, 0.8);
    assert!(
        (value - expected).abs() <= 1e-12 * expected.abs().max(1e-3),
        "{value} vs {expected}"
    );
}

#[test]
fn gradients_match_finite_differences() {
    let (rewards, bins, groups) = batch(40, 3, 2);
    for kernel in [
        KernelKind::Rbf,
        KernelKind::Laplacian,
        KernelKind::Imq,
        KernelKind::Energy,
    ] {
        for estimator in [Estimator::Biased, Estimator::Unbiased, Estimator::Linear] {
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::Max] {
                let options = Options {
                    kernel,
                    bandwidth: Bandwidth::Fixed(vec![0.5, 2.0]),
                    estimator,
                    reduction,
                };
                let value_at = |r: &Vec<f64>| {
                    let input = Input::new(r, &bins).with_groups(&groups);
                    pairwise_bin_mmd(&input, &options).unwrap().value.unwrap()
                };
                let input = Input::new(&rewards, &bins).with_groups(&groups);
                let (_, grad) = pairwise_bin_mmd_value_and_grad(&input, &options).unwrap();
                for i in 0..rewards.len() {
                    let h = 1e-6;
                    let (mut up, mut down) = (rewards.clone(), rewards.clone());
                    up[i] += h;
                    down[i] -= h;
                    let numeric = (value_at(&up) - value_at(&down)) / (2.0 * h);
                    assert!(
                        (numeric - grad[i]).abs() < 1e-6 + 1e-5 * numeric.abs(),
                        "{kernel:?} {estimator:?} {reduction:?} at {i}: {numeric} vs {}",
                        grad[i]
                    );
                }
            }
        }
    }
}

#[test]
fn results_are_bitwise_the_same_for_any_thread_count() {
    let (rewards, bins, groups) = batch(5000, 13, 3);
    let options = Options {
        bandwidth: Bandwidth::Median,
        ..Options::default()
    };
    let input = Input::new(&rewards, &bins).with_groups(&groups);
    let run = |threads: usize| {
        set_num_threads(threads);
        pairwise_bin_mmd_value_and_grad(&input, &options).unwrap()
    };
    let (one, two, five) = (run(1), run(2), run(5));
    set_num_threads(0);
    let bits = |(s, g): &(Statistic, Vec<f64>)| {
        (
            s.value.unwrap().to_bits(),
            g.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(bits(&one), bits(&two));
    assert_eq!(bits(&one), bits(&five));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let rewards = vec![0.0, f64::NAN, 1.0];
    let bins = vec![0i64, 1, 0];
    let err = pairwise_bin_mmd(&Input::new(&rewards, &bins), &Options::default()).unwrap_err();
    assert_eq!(err.to_string(), "rewards[1] is NaN: values must be finite");
    let rewards = vec![0.0, 1.0];
    let bins = vec![0i64, 3];
    let err = pairwise_bin_mmd(
        &Input::new(&rewards, &bins).with_num_bins(2),
        &Options::default(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "bins[1] = 3 is out of range [0, 2)");
    let empty: Vec<f64> = vec![];
    let none: Vec<i64> = vec![];
    assert!(matches!(
        pairwise_bin_mmd(&Input::new(&empty, &none), &Options::default()),
        Err(MmdError::Empty { .. })
    ));
}

#[test]
fn scalar_reductions_need_the_occupied_bins_only() {
    let (rewards, bins, groups) = batch(200, 4, 5);
    let sparse_groups: Vec<i64> = groups.iter().map(|&g| g * 1_000_000_000).collect();
    let input = Input::new(&rewards, &bins).with_groups(&groups);
    let huge = Input::new(&rewards, &bins)
        .with_groups(&sparse_groups)
        .with_num_bins(1 << 62);
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::Max] {
        let options = Options {
            reduction,
            ..Options::default()
        };
        let expected = pairwise_bin_mmd_value_and_grad(&input, &options).unwrap();
        let (stat, grad) = pairwise_bin_mmd_value_and_grad(&huge, &options).unwrap();
        assert_eq!(stat.value, expected.0.value);
        assert_eq!(grad, expected.1);
        assert_eq!((stat.num_groups, stat.num_bins), (1_000_000_001, 1 << 62));
        assert!(stat.matrix.is_none());
    }
    let none = Options {
        reduction: Reduction::None,
        ..Options::default()
    };
    let refused = pairwise_bin_mmd(&huge, &none).unwrap_err();
    assert!(matches!(refused, MmdError::TooLarge(_)), "{refused}");
    assert!(refused.to_string().starts_with(
        "1000000001 groups x num_bins = 4611686018427387904 with reduction='none' needs a"
    ));
}

#[test]
fn bandwidth_kernels_are_scale_free_and_energy_scales_linearly() {
    let (rewards, bins, groups) = batch(60, 3, 6);
    for kernel in [
        KernelKind::Rbf,
        KernelKind::Laplacian,
        KernelKind::Imq,
        KernelKind::Energy,
    ] {
        let options = Options {
            kernel,
            bandwidth: Bandwidth::Median,
            ..Options::default()
        };
        let input = Input::new(&rewards, &bins).with_groups(&groups);
        let (unit, unit_grad) = pairwise_bin_mmd_value_and_grad(&input, &options).unwrap();
        for scale in [1e-300, 1e-160, 1e150, 1e300] {
            let scaled: Vec<f64> = rewards.iter().map(|r| r * scale).collect();
            let input = Input::new(&scaled, &bins).with_groups(&groups);
            let (stat, grad) = pairwise_bin_mmd_value_and_grad(&input, &options).unwrap();
            let (value, expected) = (stat.value.unwrap(), unit.value.unwrap());
            let (expected, grad_scale) = match kernel {
                KernelKind::Energy => (expected * scale, 1.0),
                _ => (expected, scale),
            };
            assert!(
                (value - expected).abs() <= 1e-12 * expected.abs(),
                "{kernel:?} x {scale}: {value} vs {expected}"
            );
            for (g, u) in grad.iter().zip(&unit_grad) {
                assert!(
                    (g * grad_scale - u).abs() <= 1e-9 * (1.0 + u.abs()),
                    "{kernel:?} x {scale}"
                );
            }
        }
    }
}

#[test]
fn an_interrupt_hook_stops_a_long_sweep() {
    let (rewards, bins, _) = batch(40_000, 5, 7);
    let input = Input::new(&rewards, &bins);
    let result = with_interrupt(|| true, || pairwise_bin_mmd(&input, &Options::default()));
    assert_eq!(result.unwrap_err(), MmdError::Interrupted);
}
