//! Input columns, their validation, and the sorted layout the estimators sweep over.

use crate::error::{MmdError, Result};

/// A column of rewards read in place: a slice, or a strided view supplied by a caller.
pub trait RewardColumn: Sync {
    fn len(&self) -> usize;
    /// The i-th reward as f64 (i < len).
    fn get(&self, i: usize) -> f64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A column of integer labels (bins or groups) read in place.
pub trait LabelColumn: Sync {
    fn len(&self) -> usize;
    /// The i-th label (i < len).
    fn get(&self, i: usize) -> i64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// Owned vectors and fixed arrays are columns as they are (dyn needs a sized type).
macro_rules! columns {
    ($trait:ident, $get:ty, $($t:ty),*) => {$(
        impl $trait for Vec<$t> {
            fn len(&self) -> usize {
                <[$t]>::len(self)
            }
            fn get(&self, i: usize) -> $get {
                <$get>::from(self[i])
            }
        }
        impl<const N: usize> $trait for [$t; N] {
            fn len(&self) -> usize {
                N
            }
            fn get(&self, i: usize) -> $get {
                <$get>::from(self[i])
            }
        }
    )*};
}
columns!(RewardColumn, f64, f64, f32);
columns!(LabelColumn, i64, i64, i32);

/// What the statistics are computed on: rewards, their bins in [0, num_bins) and optional groups
/// in [0, G) (G = max(groups) + 1).
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub rewards: &'a dyn RewardColumn,
    pub bins: &'a dyn LabelColumn,
    pub groups: Option<&'a dyn LabelColumn>,
    /// Defaults to max(bins) + 1; an explicit value must be >= 2.
    pub num_bins: Option<usize>,
}

impl<'a> Input<'a> {
    pub fn new(rewards: &'a dyn RewardColumn, bins: &'a dyn LabelColumn) -> Self {
        Self {
            rewards,
            bins,
            groups: None,
            num_bins: None,
        }
    }
    pub fn with_groups(mut self, groups: &'a dyn LabelColumn) -> Self {
        self.groups = Some(groups);
        self
    }
    pub fn with_num_bins(mut self, num_bins: usize) -> Self {
        self.num_bins = Some(num_bins);
        self
    }
}

/// The rewards sorted by (group, bin), input order kept within a bin (a stable counting sort).
/// The segment of cell c = g * num_bins + q is `starts[c]..starts[c + 1]`.
pub struct Layout {
    pub values: Vec<f64>,
    /// `order[k]` is the input index of sorted position k.
    pub order: Vec<usize>,
    pub num_bins: usize,
    pub num_groups: usize,
    pub starts: Vec<usize>,
}

impl Layout {
    /// Validates the input (lengths, finite rewards, labels in range) and sorts it.
    pub fn new(input: &Input) -> Result<Self> {
        let n = input.rewards.len();
        if n == 0 {
            return Err(MmdError::Empty { name: "rewards" });
        }
        if input.bins.len() != n {
            return Err(MmdError::LengthMismatch {
                name: "bins",
                expected: n,
                got: input.bins.len(),
            });
        }
        let values: Vec<f64> = (0..n).map(|i| input.rewards.get(i)).collect();
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(MmdError::NonFinite {
                name: "rewards",
                index,
                value: values[index],
            });
        }
        let bins = read_labels("bins", input.bins)?;
        let num_bins = match input.num_bins {
            Some(m) if m < 2 => {
                return Err(MmdError::InvalidArgument(format!(
                    "num_bins must be >= 2, got {m}"
                )))
            }
            Some(m) => m,
            None => bins.iter().max().map_or(0, |&b| b + 1),
        };
        if let Some(index) = bins.iter().position(|&b| b >= num_bins) {
            return Err(MmdError::OutOfRange {
                name: "bins",
                index,
                value: bins[index] as i64,
                limit: num_bins,
            });
        }
        let groups = match input.groups {
            Some(column) => {
                if column.len() != n {
                    return Err(MmdError::LengthMismatch {
                        name: "groups",
                        expected: n,
                        got: column.len(),
                    });
                }
                read_labels("groups", column)?
            }
            None => vec![0; n],
        };
        let num_groups = groups.iter().max().map_or(1, |&g| g + 1);

        let cells = num_groups * num_bins;
        let cell_of = |i: usize| groups[i] * num_bins + bins[i];
        let mut starts = vec![0usize; cells + 1];
        for i in 0..n {
            starts[cell_of(i) + 1] += 1;
        }
        for c in 0..cells {
            starts[c + 1] += starts[c];
        }
        let mut next = starts.clone();
        let mut order = vec![0usize; n];
        for i in 0..n {
            let c = cell_of(i);
            order[next[c]] = i;
            next[c] += 1;
        }
        let values = order.iter().map(|&i| values[i]).collect();
        Ok(Self {
            values,
            order,
            num_bins,
            num_groups,
            starts,
        })
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of samples of each cell (group-major).
    pub fn counts(&self) -> Vec<usize> {
        self.starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The sorted values of cell (g, q).
    pub fn segment(&self, group: usize, bin: usize) -> &[f64] {
        let c = group * self.num_bins + bin;
        &self.values[self.starts[c]..self.starts[c + 1]]
    }

    /// Puts a per-sample vector in sorted order back into input order.
    pub fn to_input_order(&self, sorted: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; sorted.len()];
        for (k, &i) in self.order.iter().enumerate() {
            out[i] = sorted[k];
        }
        out
    }
}

fn read_labels(name: &'static str, column: &dyn LabelColumn) -> Result<Vec<usize>> {
    (0..column.len())
        .map(|index| {
            let value = column.get(index);
            usize::try_from(value).map_err(|_| MmdError::Negative { name, index, value })
        })
        .collect()
}
