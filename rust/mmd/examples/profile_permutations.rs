//! The scan audit's permutations with and without pair tests, for instruction counts:
//!   cargo build --release -p crm-mmd --example profile_permutations
//!   CAUSAL_REWARDS_NUM_THREADS=1 valgrind --tool=callgrind \
//!       target/release/examples/profile_permutations ROWS BINS PERMUTATIONS energy|laplacian off|raw
//! (PERMUTATIONS = 0 counts the setup, to subtract.) Without valgrind it prints the wall time.

use crm_mmd::audit::{audit, AuditOptions, Method, PairTests};
use crm_mmd::{Bandwidth, Estimator, Input, KernelKind};
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| args[i].parse::<usize>().expect("ROWS BINS PERMUTATIONS");
    let (n, m, b) = (number(0), number(1), number(2));
    let kernel = if args[3] == "energy" {
        KernelKind::Energy
    } else {
        KernelKind::Laplacian
    };
    let pair_tests = args[4].parse::<PairTests>().expect("off, raw or maxT");
    let (rewards, bins) = common::batch(n, m, 1, 0.0);
    let input = Input::new(&rewards, &bins).with_num_bins(m);
    let options = AuditOptions {
        kernel,
        bandwidth: Bandwidth::Fixed(vec![0.5]),
        estimator: Estimator::Biased,
        permutations: b,
        seed: 3,
        pair_tests,
    };
    let start = Instant::now();
    let result = audit(&input, &options, Method::Scan).unwrap();
    println!(
        "{:.3} s, p {}",
        start.elapsed().as_secs_f64(),
        result.pvalue
    );
}
