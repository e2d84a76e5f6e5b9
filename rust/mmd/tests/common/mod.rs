//! Reproducible reward batches shared by the integration tests and the benchmarks.

/// n rewards in `bins` bins (uniform labels, a bin-dependent shift), from a fixed xorshift stream.
pub fn batch(n: usize, bins: usize, seed: u64, shift: f64) -> (Vec<f64>, Vec<i64>) {
    let mut uniform = uniform_stream(seed);
    let labels: Vec<i64> = (0..n).map(|_| (uniform() * bins as f64) as i64).collect();
    let rewards = labels
        .iter()
        .map(|&b| uniform() + shift * b as f64)
        .collect();
    (rewards, labels)
}

/// Uniform numbers in [0, 1) from a xorshift generator seeded with `seed`.
pub fn uniform_stream(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}
