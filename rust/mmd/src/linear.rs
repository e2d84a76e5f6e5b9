//! Gretton et al. (2012) linear-time MMD^2, for every bin pair of every group, and its gradient.
//!
//! For bins P, Q with samples x, y in input order and m = min(n_P / 2, n_Q / 2):
//!   MMD^2_lin = (1/m) sum_{i<m} k(x_2i, x_2i+1) + k(y_2i, y_2i+1) - k(x_2i, y_2i+1) - k(x_2i+1, y_2i)
//! O(m) per pair, O(n M) for all pairs. Needs n >= 2 in both bins.

use crate::data::Layout;
use crate::error::Result;
use crate::interrupt;
use crate::kernel::Kernel;

/// The (G, M, M) matrix, NaN where a pair is not computable.
pub fn matrix(layout: &Layout, kernel: &Kernel) -> Result<Vec<f64>> {
    let m = layout.num_bins;
    let mut out = vec![f64::NAN; layout.num_groups * m * m];
    for g in 0..layout.num_groups {
        for p in 0..m {
            interrupt::check()?;
            out[(g * m + p) * m + p] = 0.0;
            for q in p + 1..m {
                if let Some(value) = pair_value(layout.segment(g, p), layout.segment(g, q), kernel)
                {
                    out[(g * m + p) * m + q] = value;
                    out[(g * m + q) * m + p] = value;
                }
            }
        }
    }
    Ok(out)
}

fn pair_value(x: &[f64], y: &[f64], kernel: &Kernel) -> Option<f64> {
    let half = x.len().min(y.len()) / 2;
    if half == 0 {
        return None;
    }
    let total: f64 = (0..half)
        .map(|i| {
            let (x0, x1, y0, y1) = (x[2 * i], x[2 * i + 1], y[2 * i], y[2 * i + 1]);
            kernel.value(x0 - x1) + kernel.value(y0 - y1)
                - kernel.value(x0 - y1)
                - kernel.value(x1 - y0)
        })
        .sum();
    Some(total / half as f64)
}

/// Gradient (sorted order) of sum over p < q of weights[g, p, q] * MMD^2_lin(g, p, q).
pub fn gradient(layout: &Layout, kernel: &Kernel, weights: &[f64]) -> Result<Vec<f64>> {
    let m = layout.num_bins;
    let mut grad = vec![0.0; layout.len()];
    for g in 0..layout.num_groups {
        for p in 0..m {
            interrupt::check()?;
            for q in p + 1..m {
                let w = weights[(g * m + p) * m + q];
                let (xs, ys) = (layout.starts[g * m + p], layout.starts[g * m + q]);
                let (x, y) = (layout.segment(g, p), layout.segment(g, q));
                let half = x.len().min(y.len()) / 2;
                if w == 0.0 || half == 0 {
                    continue;
                }
                let scale = w / half as f64;
                for i in 0..half {
                    let (a, b) = (2 * i, 2 * i + 1);
                    let slope = |u: f64, v: f64| kernel.value_and_slope(u - v).1 * scale;
                    let xx = slope(x[a], x[b]);
                    let yy = slope(y[a], y[b]);
                    let xy = slope(x[a], y[b]);
                    let yx = slope(x[b], y[a]);
                    grad[xs + a] += xx - xy;
                    grad[xs + b] += -xx - yx;
                    grad[ys + a] += yy + yx;
                    grad[ys + b] += -yy + xy;
                }
            }
        }
    }
    Ok(grad)
}
