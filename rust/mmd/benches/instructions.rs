//! Value + gradient of the exact estimator, `repeats` times, for instruction counts that do not
//! depend on the machine's load:
//!
//!     cargo bench -p crm-mmd --bench instructions --no-run
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!         target/release/deps/instructions-HASH rbf 4096 30 1     # and again with 3 repeats
//!
//! (instructions with 3 repeats - with 1) / (2 n (n - 1) / 2) is the cost of one pair, setup
//! excluded.

use crm_mmd::{pairwise_bin_mmd_value_and_grad, Bandwidth, Input, KernelKind, Options};
use std::hint::black_box;

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let kernel: KernelKind = arg(0, "rbf").parse().expect("a kernel name");
    let n: usize = arg(1, "4096").parse().expect("n");
    let bins: usize = arg(2, "30").parse().expect("M");
    let repeats: usize = arg(3, "1").parse().expect("repeats");
    crm_mmd::set_num_threads(1);
    let (rewards, labels) = common::batch(n, bins, 1, 0.1);
    let options = Options {
        kernel,
        bandwidth: Bandwidth::Fixed(vec![0.5]),
        ..Options::default()
    };
    let mut total = 0.0;
    for _ in 0..repeats {
        let (stat, grad) =
            pairwise_bin_mmd_value_and_grad(&Input::new(&rewards, &labels), black_box(&options))
                .expect("a valid input");
        total += stat.value.unwrap_or(0.0) + grad[0];
    }
    println!("{kernel:?} n={n} M={bins} repeats={repeats}: {total:e}");
}
