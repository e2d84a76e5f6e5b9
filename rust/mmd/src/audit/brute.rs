//! `Method::Exact`: the core's brute-force sweep for the statistic; for the permutation test the
//! kernel matrix of each group is computed once and every relabelling sums it again, O(n^2) per
//! permutation without a single further kernel evaluation. When the groups' matrices would take
//! more than 256 MiB together, every permutation sweeps all pairs again (slow, but memory stays
//! O(n)).

use super::rng::Rng;
use super::shuffle::shuffle;
use super::{assemble, permutation_test, AuditOptions, AuditResult, Evaluator, Frame, Method};
use crate::data::{RowOrder, Rows};
use crate::error::Result;
use crate::exact::sweep;
use crate::kernel::Kernel;
use crate::Prepared;

/// Most kernel-matrix entries kept for the permutations, all groups together (f64: 256 MiB).
const MATRIX_ENTRIES: usize = 1 << 25;

pub fn audit(prepared: &Prepared, unbiased: bool, options: &AuditOptions) -> Result<AuditResult> {
    audit_with_limit(prepared, unbiased, options, MATRIX_ENTRIES)
}

fn audit_with_limit(
    prepared: &Prepared,
    unbiased: bool,
    options: &AuditOptions,
    matrix_entries: usize,
) -> Result<AuditResult> {
    let (layout, kernel) = (&prepared.layout, &prepared.kernel);
    let observed = sweep(layout, kernel, None)?.0;
    let rows = layout.rows(RowOrder::Input);
    let evaluator = Evaluator {
        counts: &rows.counts,
        num_groups: rows.num_groups(),
        num_bins: rows.num_bins,
        unbiased,
        k0: kernel.value(0.0),
    };
    let entries = (0..rows.num_groups())
        .map(|g| rows.group(g).len().saturating_pow(2))
        .fold(0usize, usize::saturating_add);
    let test = if options.permutations == 0 || entries > matrix_entries {
        // No permutation needs the kernel matrix, or it is too large to keep: every permutation
        // (if any) sweeps all pairs again, in O(n) memory.
        permutation_test(&evaluator, &observed, options, |rng: &mut Rng| {
            Ok(sweep(&rows.layout_with(&permuted(rng, &rows)), kernel, None)?.0)
        })?
    } else {
        let matrices = KernelMatrices::new(&rows, kernel);
        let sums = matrices.sums(&rows.labels);
        permutation_test(&evaluator, &sums, options, |rng: &mut Rng| {
            Ok(matrices.sums(&permuted(rng, &rows)))
        })?
    };
    let frame = Frame {
        occupied: &layout.occupied,
        units: &prepared.units,
    };
    assemble(
        Method::Exact,
        &evaluator,
        &observed,
        prepared.bandwidths.clone(),
        test,
        frame,
    )
}

/// A uniform relabelling of the rows within each group.
fn permuted(rng: &mut Rng, rows: &Rows) -> Vec<u32> {
    let mut labels = rows.labels.clone();
    for g in 0..rows.num_groups() {
        shuffle(rng, &mut labels[rows.group(g)]);
    }
    labels
}

/// The kernel matrix of each group's rows, so that relabelled sums need no kernel evaluation.
struct KernelMatrices<'a> {
    rows: &'a Rows,
    matrices: Vec<Vec<f64>>,
}

impl<'a> KernelMatrices<'a> {
    fn new(rows: &'a Rows, kernel: &Kernel) -> Self {
        let matrices = (0..rows.num_groups())
            .map(|g| {
                let x = &rows.values[rows.group(g)];
                x.iter()
                    .flat_map(|&a| x.iter().map(move |&b| kernel.value(a - b)))
                    .collect()
            })
            .collect();
        Self { rows, matrices }
    }

    /// (G, M, M) kernel sums with the rows labelled `labels`.
    fn sums(&self, labels: &[u32]) -> Vec<f64> {
        let m = self.rows.num_bins;
        let mut sums = vec![0.0; self.matrices.len() * m * m];
        let mut row = vec![0.0; m];
        for (g, k) in self.matrices.iter().enumerate() {
            let range = self.rows.group(g);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rng::Rng;
    use crate::{prepare, Bandwidth, Estimator, Input, KernelKind};

    #[test]
    fn sweeping_again_equals_the_kernel_matrix() {
        let mut rng = Rng::new(4, 0);
        let values: Vec<f64> = (0..200).map(|_| rng.uniform()).collect();
        let bins: Vec<i64> = (0..200).map(|i| (i % 3) as i64).collect();
        let groups: Vec<i64> = (0..200).map(|i| (i % 2) as i64).collect();
        let input = Input::new(&values, &bins)
            .with_groups(&groups)
            .with_num_bins(3);
        let bandwidth = Bandwidth::Fixed(vec![0.3]);
        let prepared = prepare(&input, KernelKind::Rbf, &bandwidth).unwrap();
        let options = AuditOptions {
            kernel: KernelKind::Rbf,
            bandwidth,
            estimator: Estimator::Biased,
            permutations: 25,
            seed: 5,
        };
        let matrix = audit_with_limit(&prepared, false, &options, MATRIX_ENTRIES).unwrap();
        let sweep = audit_with_limit(&prepared, false, &options, 10).unwrap();
        for (a, b) in matrix.null_statistics.iter().zip(&sweep.null_statistics) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(matrix.pvalue, sweep.pvalue);
    }
}
