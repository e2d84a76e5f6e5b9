//! Per-pair permutation tests: the raw p-value of every computable bin pair's MMD^2 and their
//! Westfall-Young (1993) step-down maxT adjustment, from the permutations of the global test.
//!
//! Raw: p_pq = (1 + #{MMD^2_pq,b >= MMD^2_pq}) / (1 + B).
//!
//! maxT, and why the pairs are standardised first. The pairs' MMD^2 have different null scales:
//! under H0 the biased MMD^2_pq is about (1/n_p + 1/n_q) times a variable of one law, so a pair of
//! 50-row bins has null values 20 times those of a pair of 1000-row bins (crossed and categorical
//! bins differ that much), and with conditions the groups average differently per pair. The
//! maximum of raw statistics would be the small bins' almost always, and the adjusted p-values of
//! the large bins would stay near 1 whatever their effect. So each pair is standardised by the mean
//! and standard deviation of its own B permuted values, z = (MMD^2 - mean) / sd, and the maximum
//! is taken over z: every pair enters on the same scale. min-P (the maximum of 1 - p) would
//! equalise the pairs' null laws exactly, but each pair's p-value from B permutations is discrete
//! (steps of 1/(1+B)), so with many pairs the minimum piles up at the smallest steps and min-P needs
//! far more permutations for the same power (Ge, Dudoit and Speed 2003); standardised maxT keeps the
//! statistics continuous. The standard deviation is floored at the tie tolerance, so a pair whose
//! permutations all agree does not divide by zero.
//!
//! Step-down (Westfall and Young 1993, algorithm 2.8): order the pairs by observed z,
//! z_(1) >= ... >= z_(K); for each permutation the successive maxima u_b,j = max_{l >= j} z_b,(l);
//! adjusted p_(j) = max_{i <= j} (1 + #{b : u_b,i >= z_(i)}) / (1 + B), and never below the pair's
//! raw p-value. It controls the family-wise error rate in the strong sense under subset pivotality
//! (which a relabelling of the rows within groups gives: the permuted law of any subset of pairs
//! does not depend on whether the other pairs' bins differ).

use crate::error::Result;
use crate::limits;

/// The observed pair statistics and what the permutations have shown so far.
pub(super) struct PairNull {
    num_bins: usize,
    /// The positions p * M + q (p < q) of the computable pairs, and their observed MMD^2.
    at: Vec<usize>,
    observed: Vec<f64>,
    hits: Vec<usize>,
    /// (B, K) permuted MMD^2 of the K pairs, kept for maxT only.
    null: Option<Vec<f64>>,
    permutations: usize,
    tolerance: f64,
}

impl PairNull {
    /// Ready for `permutations` relabellings of the observed (M, M) matrix (NaN: not computable);
    /// `max_t` keeps their statistics (checked against the memory policy).
    pub fn new(
        matrix: &[f64],
        num_bins: usize,
        permutations: usize,
        max_t: bool,
        tolerance: f64,
    ) -> Result<Self> {
        let m = num_bins;
        let at: Vec<usize> = (0..m)
            .flat_map(|p| (p + 1..m).map(move |q| p * m + q))
            .filter(|&at| !matrix[at].is_nan())
            .collect();
        let null = if max_t {
            let k = at.len();
            limits::check(
                &|| format!("maxT over {k} bin pairs x permutations = {permutations}"),
                "array of permuted pair statistics",
                &[k, permutations],
                1,
            )?;
            Some(Vec::with_capacity(k * permutations))
        } else {
            None
        };
        Ok(Self {
            num_bins,
            observed: at.iter().map(|&at| matrix[at]).collect(),
            hits: vec![0; at.len()],
            at,
            null,
            permutations,
            tolerance,
        })
    }

    /// Counts one permutation's (M, M) matrix.
    pub fn add(&mut self, matrix: &[f64]) {
        for (j, &at) in self.at.iter().enumerate() {
            if matrix[at] >= self.observed[j] - self.tolerance {
                self.hits[j] += 1;
            }
        }
        if let Some(null) = self.null.as_mut() {
            null.extend(self.at.iter().map(|&at| matrix[at]));
        }
    }

    /// (M, M) raw and maxT adjusted p-values (the latter NaN without maxT), NaN off the pairs.
    pub fn pvalues(self) -> (Vec<f64>, Vec<f64>) {
        let b = self.permutations;
        let raw: Vec<f64> = self
            .hits
            .iter()
            .map(|&h| (1 + h) as f64 / (1 + b) as f64)
            .collect();
        let adjusted = self
            .null
            .as_ref()
            .map(|null| max_t(&self.observed, null, &raw, self.tolerance));
        (
            self.symmetric(Some(&raw)),
            self.symmetric(adjusted.as_deref()),
        )
    }

    fn symmetric(&self, values: Option<&[f64]>) -> Vec<f64> {
        let m = self.num_bins;
        let mut out = vec![f64::NAN; m * m];
        if let Some(values) = values {
            for (&at, &v) in self.at.iter().zip(values) {
                out[at] = v;
                out[(at % m) * m + at / m] = v;
            }
        }
        out
    }
}

/// Step-down maxT adjusted p-values (see the module documentation) of K statistics `observed`
/// from their (B, K) permuted values, at least `raw`.
fn max_t(observed: &[f64], null: &[f64], raw: &[f64], tolerance: f64) -> Vec<f64> {
    let k = observed.len();
    if k == 0 {
        return Vec::new();
    }
    let b = null.len() / k;
    let (means, sds) = moments(null, k, tolerance);
    let z = |j: usize, x: f64| (x - means[j]) / sds[j];
    let z_observed: Vec<f64> = (0..k).map(|j| z(j, observed[j])).collect();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &c| z_observed[c].total_cmp(&z_observed[a]));
    let mut counts = vec![0usize; k];
    for row in null.chunks_exact(k) {
        let mut running = f64::NEG_INFINITY;
        for (rank, &j) in order.iter().enumerate().rev() {
            running = running.max(z(j, row[j]));
            if running >= z_observed[j] - tolerance / sds[j] {
                counts[rank] += 1;
            }
        }
    }
    let mut adjusted = vec![0.0; k];
    let mut floor = 0.0f64;
    for (rank, &j) in order.iter().enumerate() {
        floor = floor.max((1 + counts[rank]) as f64 / (1 + b) as f64);
        adjusted[j] = floor.max(raw[j]);
    }
    adjusted
}

/// Each column's mean and standard deviation (over B rows, floored at `tolerance`), two-pass.
fn moments(null: &[f64], k: usize, tolerance: f64) -> (Vec<f64>, Vec<f64>) {
    let b = (null.len() / k).max(1) as f64;
    let mut means = vec![0.0; k];
    for row in null.chunks_exact(k) {
        means.iter_mut().zip(row).for_each(|(m, x)| *m += x);
    }
    means.iter_mut().for_each(|m| *m /= b);
    let mut sds = vec![0.0; k];
    for row in null.chunks_exact(k) {
        for ((s, x), m) in sds.iter_mut().zip(row).zip(&means) {
            *s += (x - m) * (x - m);
        }
    }
    sds.iter_mut()
        .for_each(|s| *s = (*s / b).sqrt().max(tolerance).max(f64::MIN_POSITIVE));
    (means, sds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rng::Rng;

    /// The definition, pair by pair: p_(j) = max over i <= j of the share of permutations whose
    /// largest z among the pairs ranked i or later reaches z_(i).
    fn reference(observed: &[f64], null: &[f64]) -> Vec<f64> {
        let k = observed.len();
        let b = null.len() / k;
        let (means, sds) = moments(null, k, 0.0);
        let z = |j: usize, x: f64| (x - means[j]) / sds[j];
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &c| z(c, observed[c]).total_cmp(&z(a, observed[a])));
        let single = |i: usize| {
            let later = &order[i..];
            let hits = null
                .chunks_exact(k)
                .filter(|row| {
                    later
                        .iter()
                        .map(|&l| z(l, row[l]))
                        .fold(f64::NEG_INFINITY, f64::max)
                        >= z(order[i], observed[order[i]])
                })
                .count();
            (1 + hits) as f64 / (1 + b) as f64
        };
        let mut out = vec![0.0; k];
        for j in 0..k {
            out[order[j]] = (0..=j).map(single).fold(0.0, f64::max);
        }
        out
    }

    #[test]
    fn max_t_follows_its_definition_and_bounds() {
        let mut rng = Rng::new(2, 0);
        let (k, b) = (7, 300);
        // Pairs of different null scales, two with an effect.
        let scales: Vec<f64> = (0..k).map(|j| 1.0 + j as f64).collect();
        let null: Vec<f64> = (0..b * k)
            .map(|i| scales[i % k] * rng.uniform().powi(2))
            .collect();
        let mut observed: Vec<f64> = scales.iter().map(|s| 0.3 * s).collect();
        observed[1] = 2.5;
        observed[5] = 5.99;
        let raw: Vec<f64> = (0..k)
            .map(|j| {
                let hits = null.chunks_exact(k).filter(|r| r[j] >= observed[j]).count();
                (1 + hits) as f64 / (1 + b) as f64
            })
            .collect();
        let adjusted = max_t(&observed, &null, &raw, 0.0);
        let expected = reference(&observed, &null);
        for j in 0..k {
            assert!(adjusted[j] >= raw[j]);
            assert_eq!(adjusted[j], expected[j].max(raw[j]), "pair {j}");
        }
        assert!(adjusted[1] < 0.05 && adjusted[5] < 0.05, "{adjusted:?}");
        assert!(adjusted
            .iter()
            .enumerate()
            .all(|(j, &p)| j == 1 || j == 5 || p > 0.05));
    }

    #[test]
    fn max_t_storage_is_checked_before_allocating() {
        // 45 pairs x 2^40 permutations: 360 TiB, refused whatever the machine; raw tests need none.
        let m = 10;
        let matrix: Vec<f64> = (0..m * m)
            .map(|at| if at % (m + 1) == 0 { 0.0 } else { 1.0 })
            .collect();
        let error = PairNull::new(&matrix, m, 1 << 40, true, 0.0).err().unwrap();
        assert!(
            error.to_string().contains("maxT over 45 bin pairs"),
            "{error}"
        );
        assert!(PairNull::new(&matrix, m, 1 << 40, false, 0.0).is_ok());
    }

    #[test]
    fn one_pair_is_its_raw_test_and_degenerate_pairs_are_not_significant() {
        let null = [1.0, 2.0, 3.0, 4.0];
        let raw = [(1 + 2) as f64 / 5.0];
        assert_eq!(max_t(&[3.0], &null, &raw, 0.0), raw.to_vec());
        // Every permutation equal to the observed value: p = 1, without dividing by zero.
        let flat = [0.5; 12];
        let p = max_t(&[0.5, 0.5, 0.5], &flat, &[1.0; 3], 1e-12);
        assert_eq!(p, vec![1.0; 3]);
    }
}
