//! Exact sampling from the hypergeometric and multivariate hypergeometric distributions.
//!
//! Hypergeometric(N, K, n): the number of successes among n draws without replacement from N items
//! of which K are successes; P(X = x) = C(K, x) C(N - K, n - x) / C(N, n).
//!
//! Small samples are simulated draw by draw with integer arithmetic. Otherwise the sampler inverts
//! the distribution from its mode outwards ("chop-down" search), starting from P(mode) computed
//! with Loader's (2000) saddle-point expansion, which keeps about 14 significant digits where
//! log-factorials would cancel catastrophically, and walking with the exact ratio
//! P(x + 1) / P(x) = (K - x)(n - x) / ((x + 1)(N - K - n + x + 1)). Expected steps: O(sd).

use super::rng::Rng;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// ln(n!) - ln(sqrt(2 pi n) (n / e)^n), for integer n >= 1.
fn stirling_error(n: f64) -> f64 {
    if n <= 15.0 {
        let log_factorial: f64 = (2..=n as u64).map(|k| (k as f64).ln()).sum();
        return log_factorial - (n + 0.5) * n.ln() + n - 0.5 * LN_2PI;
    }
    const S0: f64 = 1.0 / 12.0;
    const S1: f64 = 1.0 / 360.0;
    const S2: f64 = 1.0 / 1260.0;
    const S3: f64 = 1.0 / 1680.0;
    const S4: f64 = 1.0 / 1188.0;
    let nn = n * n;
    (S0 - (S1 - (S2 - (S3 - S4 / nn) / nn) / nn) / nn) / n
}

/// x ln(x / m) + m - x, without cancellation when x is close to m.
fn deviance(x: f64, m: f64) -> f64 {
    if (x - m).abs() < 0.1 * (x + m) {
        let v = (x - m) / (x + m);
        let v2 = v * v;
        let mut sum = (x - m) * v;
        let mut term = 2.0 * x * v;
        for j in 1..1000 {
            term *= v2;
            let next = sum + term / f64::from(2 * j + 1);
            if next == sum {
                return next;
            }
            sum = next;
        }
        return sum;
    }
    x * (x / m).ln() + m - x
}

/// Binomial(n, p) probability of x, q = 1 - p given separately (Loader 2000).
fn binomial_pmf(x: f64, n: f64, p: f64, q: f64) -> f64 {
    if x < 0.0 || x > n {
        return 0.0;
    }
    if x == 0.0 {
        if n == 0.0 {
            return 1.0;
        }
        let log = if p < 0.1 {
            -deviance(n, n * q) - n * p
        } else {
            n * q.ln()
        };
        return log.exp();
    }
    if x == n {
        let log = if q < 0.1 {
            -deviance(n, n * p) - n * q
        } else {
            n * p.ln()
        };
        return log.exp();
    }
    let log = stirling_error(n)
        - stirling_error(x)
        - stirling_error(n - x)
        - deviance(x, n * p)
        - deviance(n - x, n * q);
    let log_scale = LN_2PI + x.ln() + (-x / n).ln_1p();
    (log - 0.5 * log_scale).exp()
}

/// P(X = x) for X ~ Hypergeometric(total, successes, draws).
pub fn pmf(x: u64, total: u64, successes: u64, draws: u64) -> f64 {
    let failures = total - successes;
    if x > successes || x > draws || draws - x > failures {
        return 0.0;
    }
    let (x, r, b, n) = (x as f64, successes as f64, failures as f64, draws as f64);
    let p = n / (r + b);
    let q = (r + b - n) / (r + b);
    binomial_pmf(x, r, p, q) * binomial_pmf(n - x, b, p, q) / binomial_pmf(n, r + b, p, q)
}

/// Below this many draws the sampler simulates the draws one by one.
const DIRECT_DRAWS: u64 = 12;

/// One draw of Hypergeometric(total, successes, draws); needs successes, draws <= total.
pub fn sample(rng: &mut Rng, total: u64, successes: u64, draws: u64) -> u64 {
    debug_assert!(successes <= total && draws <= total);
    if draws == 0 || successes == 0 {
        return 0;
    }
    if successes == total {
        return draws;
    }
    if draws == total {
        return successes;
    }
    // The items not drawn are a uniform subset too; successes and failures swap roles freely.
    if draws > total / 2 {
        return successes - sample(rng, total, successes, total - draws);
    }
    if successes > total / 2 {
        return draws - sample(rng, total, total - successes, draws);
    }
    if draws <= DIRECT_DRAWS {
        let (mut left, mut hits) = (total, 0);
        for _ in 0..draws {
            if rng.below(left) < successes - hits {
                hits += 1;
            }
            left -= 1;
        }
        return hits;
    }
    chop_down(rng, total, successes, draws)
}

fn chop_down(rng: &mut Rng, total: u64, successes: u64, draws: u64) -> u64 {
    let (nf, kf, df) = (total as f64, successes as f64, draws as f64);
    let low = (draws + successes).saturating_sub(total);
    let high = draws.min(successes);
    let mode = (((df + 1.0) * (kf + 1.0) / (nf + 2.0)).floor() as u64).clamp(low, high);
    let at_mode = pmf(mode, total, successes, draws);
    // P(x + 1) / P(x) and P(x - 1) / P(x).
    let up = |x: f64| (kf - x) * (df - x) / ((x + 1.0) * (nf - kf - df + x + 1.0));
    let down = |x: f64| x * (nf - kf - df + x) / ((kf - x + 1.0) * (df - x + 1.0));
    loop {
        let mut u = rng.uniform();
        if u < at_mode {
            return mode;
        }
        u -= at_mode;
        let (mut lower, mut upper) = (mode, mode);
        let (mut p_lower, mut p_upper) = (at_mode, at_mode);
        while lower > low || upper < high {
            if upper < high {
                p_upper *= up(upper as f64);
                upper += 1;
                if u < p_upper {
                    return upper;
                }
                u -= p_upper;
            }
            if lower > low {
                p_lower *= down(lower as f64);
                lower -= 1;
                if u < p_lower {
                    return lower;
                }
                u -= p_lower;
            }
        }
        // Only rounding (total mass 1 - 1e-14 or so) leads here: draw again.
    }
}

/// Draws `draws` items without replacement from a population with `remaining[c]` items of each
/// category c; writes the number drawn of each category to `out`.
pub fn sample_multivariate(rng: &mut Rng, remaining: &[u64], draws: u64, out: &mut [u64]) {
    let mut total: u64 = remaining.iter().sum();
    debug_assert!(draws <= total);
    let mut left = draws;
    let last = remaining.len().saturating_sub(1);
    for (c, (&count, slot)) in remaining.iter().zip(out.iter_mut()).enumerate() {
        let taken = if left == 0 {
            0
        } else if c == last {
            left
        } else {
            sample(rng, total, count, left)
        };
        *slot = taken;
        left -= taken;
        total -= count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_pmf(x: u64, total: u64, successes: u64, draws: u64) -> f64 {
        let ln_choose = |n: u64, k: u64| -> f64 {
            (1..=k)
                .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
                .sum()
        };
        if x > successes || draws - x > total - successes {
            return 0.0;
        }
        (ln_choose(successes, x) + ln_choose(total - successes, draws - x)
            - ln_choose(total, draws))
        .exp()
    }

    #[test]
    fn pmf_matches_log_binomials() {
        for &(total, successes, draws) in &[(20, 7, 9), (200, 50, 60), (5000, 1000, 300), (3, 1, 2)]
        {
            let mut mass = 0.0;
            for x in 0..=draws.min(successes) {
                let (ours, reference) = (
                    pmf(x, total, successes, draws),
                    brute_pmf(x, total, successes, draws),
                );
                // The reference sums ~x logarithms and is itself good to ~1e-12 only.
                assert!(
                    (ours - reference).abs() <= 5e-11 * reference.max(1e-300),
                    "{x} {ours} {reference}"
                );
                mass += ours;
            }
            assert!((mass - 1.0).abs() < 1e-12);
        }
        // C(1000, 6) C(4000, 294) / C(5000, 300) in exact rational arithmetic (Python fractions).
        let exact = 2.967125033847349e-22;
        assert!((pmf(6, 5000, 1000, 300) - exact).abs() < 1e-13 * exact);
    }

    #[test]
    fn sampler_matches_pmf() {
        // Chi-square goodness of fit for a direct and a chop-down case, including symmetries.
        for &(total, successes, draws) in &[
            (30u64, 12u64, 7u64),
            (400, 90, 150),
            (400, 300, 350),
            (10_000, 2_000, 1_000),
        ] {
            let mut rng = Rng::new(3, total);
            let trials = 40_000;
            let mut counts = vec![0f64; (draws.min(successes) + 1) as usize];
            for _ in 0..trials {
                counts[sample(&mut rng, total, successes, draws) as usize] += 1.0;
            }
            let (mut chi2, mut cells) = (0.0, 0);
            for (x, &observed) in counts.iter().enumerate() {
                let expected = trials as f64 * pmf(x as u64, total, successes, draws);
                if expected > 20.0 {
                    chi2 += (observed - expected).powi(2) / expected;
                    cells += 1;
                }
            }
            // Mean of chi2 is about cells - 1, sd about sqrt(2 cells).
            let limit = cells as f64 + 6.0 * (2.0 * cells as f64).sqrt();
            assert!(
                chi2 < limit,
                "({total}, {successes}, {draws}): chi2 {chi2} over {cells} cells"
            );
        }
    }

    #[test]
    fn multivariate_preserves_totals() {
        let mut rng = Rng::new(9, 0);
        let remaining = [5u64, 0, 17, 3, 1000];
        let mut out = [0u64; 5];
        for draws in [0u64, 1, 10, 500, 1025] {
            sample_multivariate(&mut rng, &remaining, draws, &mut out);
            assert_eq!(out.iter().sum::<u64>(), draws);
            assert!(out.iter().zip(&remaining).all(|(o, r)| o <= r));
        }
    }
}
