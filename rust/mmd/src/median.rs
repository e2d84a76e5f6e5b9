//! The median heuristic, exactly: the median of |x_i - x_j| over pairs i < j (the mean of the two
//! middle values when the number of pairs is even, as numpy does), bit for bit the value a brute
//! force gives, in O(n log n) time and O(n) memory.
//!
//! Sort once; the k-th smallest difference is bracketed by bisection on the value, counting the
//! pairs within a threshold by two pointers in O(n) (in parallel blocks), until at most `BAND` pairs
//! fall inside the bracket; those differences are then listed and the k-th is selected. The
//! differences are computed exactly as a brute force computes them, so the answer is one of them.
//! About 25 passes at n = 10^7; never lists the n(n-1)/2 pairs.

use crate::data::{read_rewards, RewardColumn};
use crate::error::{MmdError, Result};
use crate::interrupt;
use crate::parallel::map_blocks;

/// Largest number of differences listed at the end.
const BAND: u64 = 1 << 22;
/// Rows per parallel block of a counting pass.
const BLOCK: usize = 1 << 16;

/// Median of |x_i - x_j| over i < j; 1.0 when that is 0 or there is no pair, so that it can be
/// used as a bandwidth. Non-finite rewards are refused, named.
///
/// ```
/// let rewards = vec![0.0, 1.0, 3.0]; // pairs: 1, 3, 2
/// assert_eq!(crm_mmd::median_bandwidth(&rewards).unwrap(), 2.0);
/// ```
pub fn median_bandwidth(rewards: &dyn RewardColumn) -> Result<f64> {
    median_of(read_rewards(rewards)?)
}

/// `median_bandwidth` of finite values, taken over.
pub(crate) fn median_of(mut values: Vec<f64>) -> Result<f64> {
    values.sort_unstable_by(f64::total_cmp);
    let (Some(&low), Some(&high)) = (values.first(), values.last()) else {
        return Ok(1.0);
    };
    // Differences that overflow are taken in quarters (exact for such large values).
    let quarters = !(high - low).is_finite();
    if quarters {
        values.iter_mut().for_each(|x| *x *= 0.25);
    }
    let median = median_distance_sorted(&values)? * if quarters { 4.0 } else { 1.0 };
    if !median.is_finite() {
        return Err(MmdError::TooLarge(
            "the median distance between rewards exceeds the largest float64: rescale the rewards"
                .into(),
        ));
    }
    Ok(if median > 0.0 { median } else { 1.0 })
}

/// The median of x_j - x_i over i < j of ascending values; 0.0 when there is no pair.
fn median_distance_sorted(sorted: &[f64]) -> Result<f64> {
    let n = sorted.len() as u64;
    if n < 2 {
        return Ok(0.0);
    }
    let pairs = n * (n - 1) / 2;
    Ok(if pairs % 2 == 1 {
        kth_difference(sorted, pairs / 2 + 1)?
    } else {
        0.5 * (kth_difference(sorted, pairs / 2)? + kth_difference(sorted, pairs / 2 + 1)?)
    })
}

/// Number of pairs i < j with x_j - x_i <= t.
fn pairs_within(sorted: &[f64], t: f64) -> u64 {
    let blocks = map_blocks(sorted.len().div_ceil(BLOCK), |block| {
        let rows = block * BLOCK..((block + 1) * BLOCK).min(sorted.len());
        let first = rows.start;
        // The first i with x_first - x_i <= t, then two pointers.
        let mut i = sorted[..first].partition_point(|&x| sorted[first] - x > t);
        let mut count = 0u64;
        for j in rows {
            while sorted[j] - sorted[i] > t {
                i += 1;
            }
            count += (j - i) as u64;
        }
        count
    });
    blocks.iter().sum()
}

/// The k-th smallest (1-based) difference x_j - x_i, i < j.
fn kth_difference(sorted: &[f64], k: u64) -> Result<f64> {
    let (mut low, mut high) = (0.0f64, sorted[sorted.len() - 1] - sorted[0]);
    let mut below = pairs_within(sorted, low);
    if below >= k {
        return Ok(0.0);
    }
    let mut at_high = sorted.len() as u64 * (sorted.len() as u64 - 1) / 2;
    // Invariant: pairs_within(low) = below < k <= at_high = pairs_within(high).
    while at_high - below > BAND {
        interrupt::check()?;
        let mid = low + 0.5 * (high - low);
        if mid <= low || mid >= high {
            break;
        }
        let count = pairs_within(sorted, mid);
        if count >= k {
            (high, at_high) = (mid, count);
        } else {
            (low, below) = (mid, count);
        }
    }
    // List the differences in (low, high]; the answer is the (k - below)-th smallest of them.
    let mut band = Vec::with_capacity((at_high - below) as usize);
    let (mut i_high, mut i_low) = (0usize, 0usize);
    for j in 0..sorted.len() {
        while sorted[j] - sorted[i_high] > high {
            i_high += 1;
        }
        while i_low < j && sorted[j] - sorted[i_low] > low {
            i_low += 1;
        }
        band.extend((i_high..i_low).map(|i| sorted[j] - sorted[i]));
    }
    let rank = (k - below - 1) as usize;
    Ok(*band.select_nth_unstable_by(rank, f64::total_cmp).1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rng::Rng;

    /// Every pair listed, sorted, the middle taken: what numpy's median of the pairs gives.
    fn brute_force(values: &[f64]) -> f64 {
        let mut d = Vec::new();
        for i in 0..values.len() {
            for j in i + 1..values.len() {
                d.push((values[i] - values[j]).abs());
            }
        }
        d.sort_by(f64::total_cmp);
        let m = d.len();
        let median = match m {
            0 => 0.0,
            _ if m % 2 == 1 => d[m / 2],
            _ => 0.5 * (d[m / 2 - 1] + d[m / 2]),
        };
        if median > 0.0 {
            median
        } else {
            1.0
        }
    }

    #[test]
    fn equals_the_brute_force_bit_for_bit() {
        let mut rng = Rng::new(2, 0);
        for (n, ties, offset) in [
            (2usize, false, 0.0),
            (3, false, 0.0),
            (5, true, 1e6),
            (10, true, 0.0),
            (37, true, 1e6),
            (257, false, 0.0),
            (3000, true, 0.0),
            // More pairs than BAND, so that bisection runs before the listing.
            (4000, false, 0.0),
        ] {
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    let x = rng.uniform() * 7.0 - 2.0;
                    offset + if ties { (x * 4.0).round() / 3.0 } else { x }
                })
                .collect();
            assert_eq!(
                median_of(values.clone()).unwrap().to_bits(),
                brute_force(&values).to_bits(),
                "n={n}"
            );
        }
    }

    #[test]
    fn degenerate_and_extreme_inputs() {
        let median = |v: &[f64]| median_of(v.to_vec()).unwrap();
        assert_eq!(median(&[]), 1.0);
        assert_eq!(median(&[4.0]), 1.0);
        assert_eq!(median(&[2.0, 2.0, 2.0]), 1.0);
        assert_eq!(median(&[1.0, 4.0]), 3.0);
        // Differences beyond float64 are taken in quarters, exactly.
        assert_eq!(median(&[-1e308, 0.5e308, 1e308]), 0.5e308 - -1e308);
        assert!(median_of(vec![-1.7e308, 1.7e308]).is_err());
        let rewards = vec![1.0, f64::NAN];
        assert_eq!(
            median_bandwidth(&rewards).unwrap_err().to_string(),
            "rewards[1] is NaN: values must be finite"
        );
    }
}
