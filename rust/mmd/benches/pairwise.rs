//! cargo bench -p crm-mmd: value + gradient of the exact estimator, the linear estimator and the
//! median bandwidth, at training and audit sizes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crm_mmd::{
    median_bandwidth, pairwise_bin_mmd_value_and_grad, Bandwidth, Estimator, Input, Options,
};
use std::hint::black_box;

#[path = "../tests/common/mod.rs"]
mod common;

fn batch(n: usize, bins: usize) -> (Vec<f64>, Vec<i64>) {
    common::batch(n, bins, 1, 0.1)
}

fn exact(c: &mut Criterion) {
    let mut group = c.benchmark_group("exact_value_and_grad");
    for n in [256usize, 1024, 4096] {
        for bins in [10usize, 30] {
            let (rewards, labels) = batch(n, bins);
            let options = Options::default();
            group.bench_with_input(BenchmarkId::new(format!("M{bins}"), n), &n, |b, _| {
                b.iter(|| {
                    pairwise_bin_mmd_value_and_grad(
                        &Input::new(&rewards, &labels),
                        black_box(&options),
                    )
                })
            });
        }
    }
    group.finish();
}

fn linear_and_median(c: &mut Criterion) {
    let (rewards, labels) = batch(100_000, 20);
    let options = Options {
        estimator: Estimator::Linear,
        bandwidth: Bandwidth::Median,
        ..Options::default()
    };
    c.bench_function("linear_value_and_grad_100k_M20", |b| {
        b.iter(|| {
            pairwise_bin_mmd_value_and_grad(&Input::new(&rewards, &labels), black_box(&options))
        })
    });
    c.bench_function("median_bandwidth_100k", |b| {
        b.iter(|| median_bandwidth(black_box(&rewards)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = exact, linear_and_median
}
criterion_main!(benches);
