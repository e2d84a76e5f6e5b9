//! The grid sketch of rewards: per-cell (group x bin) histograms, mergeable by integer addition, so
//! that chunks, files and Ray partitions add up exactly.
//!
//! - fine: linear binning on P points g_k = low + k h. A reward at position (x - low)/h = k + t
//!   puts weight 1 - t on g_k and t on g_k+1, with t rounded to a multiple of 2^-32 and weights
//!   stored as integers in units of 2^-32.
//! - coarse: counts of each bin at the nearest of P_c coarse points (the permutation test's tables).
//! - pooled: counts of all rewards at the nearest of P_m points (the median heuristic).

use crate::error::{MmdError, Result};
use crate::limits;

/// Fixed-point unit of the fine weights.
pub const ONE: u64 = 1 << 32;

/// Where the grids lie: [low, high] and the number of points of each grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridSpec {
    pub low: f64,
    pub high: f64,
    pub fine_points: usize,
    pub coarse_points: usize,
    pub median_points: usize,
}

impl GridSpec {
    pub fn new(
        low: f64,
        high: f64,
        fine_points: usize,
        coarse_points: usize,
        median_points: usize,
    ) -> Result<Self> {
        if !(low.is_finite() && high.is_finite() && low <= high && (high - low).is_finite()) {
            return Err(MmdError::InvalidArgument(format!(
                "grid range must be finite with low <= high and a finite width high - low, got \
                 [{low}, {high}]"
            )));
        }
        for (name, points) in [
            ("fine", fine_points),
            ("coarse", coarse_points),
            ("median", median_points),
        ] {
            if points < 2 {
                return Err(MmdError::InvalidArgument(format!(
                    "{name} grid needs >= 2 points, got {points}"
                )));
            }
        }
        Ok(Self {
            low,
            high,
            fine_points,
            coarse_points,
            median_points,
        })
    }

    /// Spacing of a grid of `points` points over [low, high] (1.0 when all rewards are equal).
    pub fn step(&self, points: usize) -> f64 {
        if self.high > self.low {
            (self.high - self.low) / (points - 1) as f64
        } else {
            1.0
        }
    }

    fn position(&self, x: f64, points: usize) -> f64 {
        ((x - self.low) / self.step(points)).clamp(0.0, (points - 1) as f64)
    }
}

/// Per-cell (group x bin) histograms; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSketch {
    pub spec: GridSpec,
    pub num_cells: usize,
    /// (cells, fine_points) weights in units of 2^-32.
    pub fine: Vec<u64>,
    /// (cells, coarse_points) counts.
    pub coarse: Vec<u64>,
    /// (median_points,) counts of all rewards.
    pub pooled: Vec<u64>,
    /// (cells,) counts.
    pub counts: Vec<u64>,
}

impl GridSketch {
    /// An empty sketch; its tables must fit the memory policy (see `limits`).
    pub fn new(spec: GridSpec, num_cells: usize) -> Result<Self> {
        let points = spec.fine_points.saturating_add(spec.coarse_points);
        limits::check(
            &|| {
                format!(
                    "num_cells = {num_cells} x fine_points = {} + coarse_points = {}",
                    spec.fine_points, spec.coarse_points
                )
            },
            "sketch table",
            &[num_cells, points],
            1,
        )?;
        limits::check(
            &|| format!("median_points = {}", spec.median_points),
            "table of pooled counts",
            &[spec.median_points],
            1,
        )?;
        Ok(Self {
            spec,
            num_cells,
            fine: vec![0; num_cells * spec.fine_points],
            coarse: vec![0; num_cells * spec.coarse_points],
            pooled: vec![0; spec.median_points],
            counts: vec![0; num_cells],
        })
    }

    /// A sketch from its arrays (e.g. merged elsewhere), checked for consistency.
    pub fn from_parts(
        spec: GridSpec,
        num_cells: usize,
        fine: Vec<u64>,
        coarse: Vec<u64>,
        pooled: Vec<u64>,
        counts: Vec<u64>,
    ) -> Result<Self> {
        let sketch = Self {
            spec,
            num_cells,
            fine,
            coarse,
            pooled,
            counts,
        };
        let expect = |name: &str, got: usize, want: usize| {
            if got == want {
                Ok(())
            } else {
                Err(MmdError::InvalidArgument(format!(
                    "sketch {name} has {got} entries, expected {want}"
                )))
            }
        };
        expect("fine", sketch.fine.len(), num_cells * spec.fine_points)?;
        expect(
            "coarse",
            sketch.coarse.len(),
            num_cells * spec.coarse_points,
        )?;
        expect("pooled", sketch.pooled.len(), spec.median_points)?;
        expect("counts", sketch.counts.len(), num_cells)?;
        for cell in 0..num_cells {
            let fine: u128 = sketch.fine[cell * spec.fine_points..(cell + 1) * spec.fine_points]
                .iter()
                .map(|&w| u128::from(w))
                .sum();
            let coarse: u64 = sketch.coarse
                [cell * spec.coarse_points..(cell + 1) * spec.coarse_points]
                .iter()
                .sum();
            let count = sketch.counts[cell];
            if fine != u128::from(count) * u128::from(ONE) || coarse != count {
                return Err(MmdError::InvalidArgument(format!(
                    "sketch cell {cell} is inconsistent with its count {count}"
                )));
            }
        }
        if sketch.pooled.iter().sum::<u64>() != sketch.counts.iter().sum::<u64>() {
            return Err(MmdError::InvalidArgument(
                "sketch pooled counts do not add up to the cell counts".into(),
            ));
        }
        Ok(sketch)
    }

    /// Adds rewards (finite, within [low, high]) with their cells in [0, num_cells).
    pub fn add(&mut self, values: &[f64], cells: &[i64]) -> Result<()> {
        if cells.len() != values.len() {
            return Err(MmdError::LengthMismatch {
                name: "cells",
                expected: values.len(),
                got: cells.len(),
            });
        }
        let spec = self.spec;
        for (index, (&x, &cell)) in values.iter().zip(cells).enumerate() {
            if !x.is_finite() {
                return Err(MmdError::NonFinite {
                    name: "rewards",
                    index,
                    value: x,
                });
            }
            if x < spec.low || x > spec.high {
                return Err(MmdError::InvalidArgument(format!(
                    "rewards[{index}] = {x} lies outside the sketch range [{}, {}]",
                    spec.low, spec.high
                )));
            }
            if cell < 0 || cell as u64 >= self.num_cells as u64 {
                return Err(MmdError::OutOfRange {
                    name: "cells",
                    index,
                    value: i128::from(cell),
                    limit: self.num_cells,
                });
            }
        }
        let (pf, pc, pm) = (spec.fine_points, spec.coarse_points, spec.median_points);
        for (&x, &cell) in values.iter().zip(cells) {
            let cell = cell as usize;
            let position = spec.position(x, pf);
            let k = (position.floor() as usize).min(pf - 2);
            let t = ((position - k as f64) * ONE as f64).round() as u64;
            self.fine[cell * pf + k] += ONE - t;
            self.fine[cell * pf + k + 1] += t;
            self.coarse[cell * pc + spec.position(x, pc).round() as usize] += 1;
            self.pooled[spec.position(x, pm).round() as usize] += 1;
            self.counts[cell] += 1;
        }
        Ok(())
    }
}

/// Median of |a - b| over pairs of the rounded rewards (counts on a grid of spacing `step`):
/// each rounded reward is within step/2 of its reward, so this is within `step` of the exact median.
pub fn median_from_counts(counts: &[u64], step: f64) -> f64 {
    let n: u128 = counts.iter().map(|&c| u128::from(c)).sum();
    if n < 2 {
        return 1.0;
    }
    // Pair counts fit u64 below 2^32 rows (n^2 / 2 < 2^63); u128 beyond.
    let median = if n < 1 << 32 {
        let counts: Vec<u64> = counts.to_vec();
        median_index(&counts, n as u64)
    } else {
        let counts: Vec<u128> = counts.iter().map(|&c| u128::from(c)).collect();
        median_index(&counts, n)
    };
    if median > 0.0 {
        median * step
    } else {
        1.0
    }
}

/// The median of |k - l| over pairs of grid indices with the given counts, n = sum of counts.
fn median_index<T>(counts: &[T], n: T) -> f64
where
    T: Copy
        + Ord
        + From<u8>
        + std::ops::Add<Output = T>
        + std::ops::Sub<Output = T>
        + std::ops::Mul<Output = T>
        + std::ops::Div<Output = T>
        + std::ops::Rem<Output = T>
        + std::iter::Sum,
{
    let (zero, one, two) = (T::from(0), T::from(1), T::from(2));
    let mut cumulative = Vec::with_capacity(counts.len());
    let mut running = zero;
    for &c in counts {
        running = running + c;
        cumulative.push(running);
    }
    let ties: T = counts
        .iter()
        .map(|&c| if c > zero { c * (c - one) / two } else { zero })
        .sum();
    let last = counts.len() - 1;
    // Pairs at index distance <= t.
    let within = |t: usize| -> T {
        ties + counts
            .iter()
            .enumerate()
            .map(|(k, &c)| c * (cumulative[(k + t).min(last)] - cumulative[k]))
            .sum::<T>()
    };
    let kth = |rank: T| -> usize {
        let (mut low, mut high) = (0usize, last);
        while low < high {
            let mid = (low + high) / 2;
            if within(mid) >= rank {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        low
    };
    let pairs = n * (n - one) / two;
    if pairs % two == one {
        kth(pairs / two + one) as f64
    } else {
        0.5 * (kth(pairs / two) + kth(pairs / two + one)) as f64
    }
}
