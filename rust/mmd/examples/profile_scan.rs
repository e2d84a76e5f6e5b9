//! Instruction-count probe of the scan audit (sort once, one pass per permutation):
//!   cargo build --release -p crm-mmd --example profile_scan
//!   CAUSAL_REWARDS_NUM_THREADS=1 valgrind --tool=callgrind target/release/examples/profile_scan

use crm_mmd::audit::{audit, AuditOptions, Method, PairTests};
use crm_mmd::{Bandwidth, Estimator, Input, KernelKind};

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let (rewards, bins) = common::batch(200_000, 10, 1, 0.1);
    let mut total = 0.0;
    for kernel in [KernelKind::Laplacian, KernelKind::Energy] {
        let options = AuditOptions {
            kernel,
            bandwidth: Bandwidth::Fixed(vec![0.5]),
            estimator: Estimator::Biased,
            permutations: 20,
            seed: 3,
            pair_tests: PairTests::Raw,
        };
        let input = Input::new(&rewards, &bins).with_num_bins(10);
        let result = audit(&input, &options, Method::Scan).unwrap();
        total += result.statistic + result.pvalue + result.null_statistics[5];
    }
    println!("{total}");
}
