//! Instruction-count probe of the statistics' hot paths (exact and linear value and gradient), for
//! comparing versions under a shared machine's load:
//!   cargo build --release -p crm-mmd --example profile_core
//!   CAUSAL_REWARDS_NUM_THREADS=1 valgrind --tool=callgrind target/release/examples/profile_core

use crm_mmd::{pairwise_bin_mmd_value_and_grad, Bandwidth, Estimator, Input, KernelKind, Options};

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let (rewards, bins) = common::batch(4096, 10, 1, 0.1);
    let mut total = 0.0;
    for (kernel, estimator) in [
        (KernelKind::Rbf, Estimator::Biased),
        (KernelKind::Laplacian, Estimator::Unbiased),
        (KernelKind::Rbf, Estimator::Linear),
    ] {
        let options = Options {
            kernel,
            estimator,
            bandwidth: Bandwidth::Fixed(vec![0.5]),
            ..Options::default()
        };
        let input = Input::new(&rewards, &bins);
        let (stat, grad) = pairwise_bin_mmd_value_and_grad(&input, &options).unwrap();
        total += stat.value.unwrap() + grad[7];
    }
    println!("{total}");
}
