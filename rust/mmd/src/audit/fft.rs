//! Radix-2 FFT for the grid sketch's kernel sums, two real sequences per complex transform.
//!
//! Twiddle factors are computed directly with sin/cos (no recurrence), so the transform's relative
//! error stays near log2(N) machine epsilons (the error bound of `grid` relies on this).

use std::f64::consts::PI;

pub struct Fft {
    n: usize,
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl Fft {
    /// A transform of length n, a power of two >= 2.
    pub fn new(n: usize) -> Self {
        assert!(n.is_power_of_two() && n >= 2);
        let angle = |k: usize| -2.0 * PI * k as f64 / n as f64;
        Self {
            n,
            cos: (0..n / 2).map(|k| angle(k).cos()).collect(),
            sin: (0..n / 2).map(|k| angle(k).sin()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    /// In-place forward transform X_k = sum_j x_j exp(-2 pi i jk / n).
    pub fn forward(&self, re: &mut [f64], im: &mut [f64]) {
        let n = self.n;
        let bits = n.trailing_zeros();
        for i in 0..n {
            let j = i.reverse_bits() >> (usize::BITS - bits);
            if j > i {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut half = 1;
        while half < n {
            let stride = n / (2 * half);
            for start in (0..n).step_by(2 * half) {
                for k in 0..half {
                    let (wr, wi) = (self.cos[k * stride], self.sin[k * stride]);
                    let (a, b) = (start + k, start + k + half);
                    let tr = re[b] * wr - im[b] * wi;
                    let ti = re[b] * wi + im[b] * wr;
                    re[b] = re[a] - tr;
                    im[b] = im[a] - ti;
                    re[a] += tr;
                    im[a] += ti;
                }
            }
            half *= 2;
        }
    }

    /// Half spectra (k = 0..=n/2, as (re, im) pairs) of two real sequences of length <= n
    /// (zero-padded), from one complex transform: with z = a + i b, A_k = (Z_k + conj Z_{n-k}) / 2
    /// and B_k = (Z_k - conj Z_{n-k}) / (2i).
    pub fn real_pair(&self, a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = self.n;
        let mut re = vec![0.0; n];
        let mut im = vec![0.0; n];
        re[..a.len()].copy_from_slice(a);
        im[..b.len()].copy_from_slice(b);
        self.forward(&mut re, &mut im);
        let half = n / 2 + 1;
        let mut sa = vec![0.0; 2 * half];
        let mut sb = vec![0.0; 2 * half];
        for k in 0..half {
            let m = (n - k) % n;
            let (zr, zi, wr, wi) = (re[k], im[k], re[m], -im[m]);
            sa[2 * k] = 0.5 * (zr + wr);
            sa[2 * k + 1] = 0.5 * (zi + wi);
            sb[2 * k] = 0.5 * (zi - wi);
            sb[2 * k + 1] = -0.5 * (zr - wr);
        }
        (sa, sb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_dft() {
        let n = 16;
        let a: Vec<f64> = (0..11)
            .map(|j| (j as f64 * 0.7).sin() + 0.1 * j as f64)
            .collect();
        let b: Vec<f64> = (0..9).map(|j| (j as f64 * 1.3).cos()).collect();
        let fft = Fft::new(n);
        let (sa, sb) = fft.real_pair(&a, &b);
        for (x, spectrum) in [(&a, &sa), (&b, &sb)] {
            for k in 0..=n / 2 {
                let (mut re, mut im) = (0.0, 0.0);
                for (j, v) in x.iter().enumerate() {
                    let angle = -2.0 * PI * (j * k) as f64 / n as f64;
                    re += v * angle.cos();
                    im += v * angle.sin();
                }
                assert!(
                    (spectrum[2 * k] - re).abs() < 1e-12
                        && (spectrum[2 * k + 1] - im).abs() < 1e-12
                );
            }
        }
    }
}
