//! The median heuristic: the median of |r_i - r_j| over all pairs i < j, exact, in O(n log n).
//!
//! Sort once, then find the k-th smallest pairwise difference by bisection on the bit pattern of
//! the threshold t (non-negative floats order like their bits), counting the pairs with
//! x_j - x_i <= t by two pointers in O(n). The differences are computed exactly as a brute force
//! would compute them, and rounding is monotone, so the answer is one of those differences bit for
//! bit. Never lists the n(n-1)/2 pairs.

/// Median of |x_i - x_j| over i < j (the mean of the two middle values when the number of pairs
/// is even, as numpy does). Returns 1.0 when there is no pair or the median is 0, so that it can be
/// used as a bandwidth. The values must be finite.
///
/// ```
/// assert_eq!(crm_mmd::median_bandwidth(&[0.0, 1.0, 3.0]), 2.0); // pairs: 1, 3, 2
/// ```
pub fn median_bandwidth(values: &[f64]) -> f64 {
    let median = median_pairwise_distance(values);
    if median > 0.0 {
        median
    } else {
        1.0
    }
}

/// Median of |x_i - x_j| over i < j; 0.0 when there are fewer than two values.
pub fn median_pairwise_distance(values: &[f64]) -> f64 {
    let n = values.len() as u64;
    if n < 2 {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let pairs = n * (n - 1) / 2;
    if pairs % 2 == 1 {
        kth_smallest_difference(&sorted, pairs / 2 + 1)
    } else {
        let low = kth_smallest_difference(&sorted, pairs / 2);
        let high = kth_smallest_difference(&sorted, pairs / 2 + 1);
        0.5 * (low + high)
    }
}

/// Number of pairs i < j (of sorted values) with x_j - x_i <= t.
fn pairs_within(sorted: &[f64], t: f64) -> u64 {
    let mut count = 0u64;
    let mut i = 0usize;
    for j in 0..sorted.len() {
        while sorted[j] - sorted[i] > t {
            i += 1;
        }
        count += (j - i) as u64;
    }
    count
}

/// The k-th smallest (1-based) of the differences x_j - x_i, i < j, of sorted values.
fn kth_smallest_difference(sorted: &[f64], k: u64) -> f64 {
    // Smallest bit pattern t with pairs_within(t) >= k; the largest difference qualifies.
    let mut low = 0u64; // 0.0
    let mut high = (sorted[sorted.len() - 1] - sorted[0]).to_bits();
    if pairs_within(sorted, 0.0) >= k {
        return 0.0;
    }
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if pairs_within(sorted, f64::from_bits(mid)) >= k {
            high = mid;
        } else {
            low = mid;
        }
    }
    f64::from_bits(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_median(values: &[f64]) -> f64 {
        let mut d = Vec::new();
        for i in 0..values.len() {
            for j in i + 1..values.len() {
                d.push((values[i] - values[j]).abs());
            }
        }
        d.sort_by(f64::total_cmp);
        let m = d.len();
        if m % 2 == 1 {
            d[m / 2]
        } else {
            0.5 * (d[m / 2 - 1] + d[m / 2])
        }
    }

    #[test]
    fn matches_brute_force() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for n in [2usize, 3, 4, 5, 10, 37, 100] {
            let values: Vec<f64> = (0..n)
                .map(|_| 1e6 + (next() * 10.0).round() / 3.0)
                .collect();
            assert_eq!(
                median_pairwise_distance(&values),
                brute_median(&values),
                "n={n}"
            );
        }
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(median_bandwidth(&[]), 1.0);
        assert_eq!(median_bandwidth(&[4.0]), 1.0);
        assert_eq!(median_bandwidth(&[2.0, 2.0, 2.0]), 1.0);
        assert_eq!(median_pairwise_distance(&[1.0, 4.0]), 3.0);
    }
}
