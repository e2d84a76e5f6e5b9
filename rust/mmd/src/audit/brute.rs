//! `Method::Exact`: the core's brute-force sweep for the statistic; for the permutation test the
//! kernel matrix of each group is computed once and every relabelling sums it again, O(n^2) per
//! permutation without a single further kernel evaluation. Groups too large for their matrix to
//! fit in 256 MiB sweep all pairs again for every permutation (slow, but memory stays O(n)).

use super::rng::Rng;
use super::shuffle::shuffle;
use super::{assemble, permutation_test, AuditOptions, AuditResult, Evaluator, Labelled, Method};
use crate::data::{Input, Layout};
use crate::error::Result;
use crate::exact::sweep;
use crate::kernel::Kernel;

/// Largest kernel matrix kept for the permutations (entries of f64: 256 MiB).
const MATRIX_ENTRIES: usize = 1 << 25;

pub fn audit(
    data: &Labelled,
    kernel: &Kernel,
    bandwidths: Vec<f64>,
    unbiased: bool,
    options: &AuditOptions,
) -> Result<AuditResult> {
    audit_with_limit(data, kernel, bandwidths, unbiased, options, MATRIX_ENTRIES)
}

fn audit_with_limit(
    data: &Labelled,
    kernel: &Kernel,
    bandwidths: Vec<f64>,
    unbiased: bool,
    options: &AuditOptions,
    matrix_entries: usize,
) -> Result<AuditResult> {
    let m = data.num_bins;
    let bins: Vec<i64> = data.labels.iter().map(|&l| i64::from(l)).collect();
    let groups: Vec<i64> = (0..data.num_groups)
        .flat_map(|g| std::iter::repeat_n(g as i64, data.group(g).len()))
        .collect();
    let core_sums_for = |bins: &Vec<i64>| -> Result<Vec<f64>> {
        let input = Input::new(&data.values, bins)
            .with_groups(&groups)
            .with_num_bins(m);
        Ok(sweep(&Layout::new(&input)?, kernel, None).0)
    };
    let core_sums = core_sums_for(&bins)?;
    let evaluator = Evaluator {
        counts: &data.counts,
        num_groups: data.num_groups,
        num_bins: m,
        unbiased,
        k0: kernel.value(0.0),
    };
    let largest = (0..data.num_groups)
        .map(|g| data.group(g).len())
        .max()
        .unwrap_or(0);
    if options.permutations == 0 || largest * largest > matrix_entries {
        // No permutation needs the kernel matrix, or it is too large to keep: every permutation
        // (if any) sweeps all pairs again, in O(n) memory.
        let test = permutation_test(&evaluator, &core_sums, options, |rng: &mut Rng| {
            let mut labels = data.labels.clone();
            for g in 0..data.num_groups {
                shuffle(rng, &mut labels[data.group(g)]);
            }
            let bins: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
            core_sums_for(&bins).expect("labels validated above")
        });
        return Ok(assemble(
            Method::Exact,
            &evaluator,
            &core_sums,
            bandwidths,
            test,
        ));
    }

    let matrices: Vec<Vec<f64>> = (0..data.num_groups)
        .map(|g| {
            let x = &data.values[data.group(g)];
            x.iter()
                .flat_map(|&a| x.iter().map(move |&b| kernel.value(a - b)))
                .collect()
        })
        .collect();
    let sums_for = |labels: &[u32]| {
        let mut sums = vec![0.0; data.num_groups * m * m];
        let mut row = vec![0.0; m];
        for (g, k) in matrices.iter().enumerate() {
            let range = data.group(g);
            let (labels, n) = (&labels[range.clone()], range.len());
            for i in 0..n {
                row.fill(0.0);
                for (value, &label) in k[i * n..(i + 1) * n].iter().zip(labels) {
                    row[label as usize] += value;
                }
                let cell = g * m + labels[i] as usize;
                sums[cell * m..(cell + 1) * m]
                    .iter_mut()
                    .zip(&row)
                    .for_each(|(s, r)| *s += r);
            }
        }
        sums
    };
    let test = permutation_test(
        &evaluator,
        &sums_for(&data.labels),
        options,
        |rng: &mut Rng| {
            let mut labels = data.labels.clone();
            for g in 0..data.num_groups {
                shuffle(rng, &mut labels[data.group(g)]);
            }
            sums_for(&labels)
        },
    );
    Ok(assemble(
        Method::Exact,
        &evaluator,
        &core_sums,
        bandwidths,
        test,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rng::Rng;
    use crate::{Bandwidth, Estimator, KernelKind};

    #[test]
    fn sweeping_again_equals_the_kernel_matrix() {
        let mut rng = Rng::new(4, 0);
        let values: Vec<f64> = (0..200).map(|_| rng.uniform()).collect();
        let bins: Vec<i64> = (0..200).map(|i| (i % 3) as i64).collect();
        let groups: Vec<i64> = (0..200).map(|i| (i % 2) as i64).collect();
        let data = Labelled::new(&values, &bins, Some(&groups), 3).unwrap();
        let kernel = Kernel::new(KernelKind::Rbf, &[0.3]).unwrap();
        let options = AuditOptions {
            kernel: KernelKind::Rbf,
            bandwidth: Bandwidth::Fixed(vec![0.3]),
            estimator: Estimator::Biased,
            permutations: 25,
            seed: 5,
        };
        let matrix =
            audit_with_limit(&data, &kernel, vec![0.3], false, &options, MATRIX_ENTRIES).unwrap();
        let sweep = audit_with_limit(&data, &kernel, vec![0.3], false, &options, 10).unwrap();
        for (a, b) in matrix.null_statistics.iter().zip(&sweep.null_statistics) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(matrix.pvalue, sweep.pvalue);
    }
}
