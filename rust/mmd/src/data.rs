//! Input columns, their validation (the one place where rewards, labels and num_bins are checked),
//! and the layout every computation works on: the rewards sorted by cell (group, bin).

use crate::error::{MmdError, Result};

/// A column of rewards read in place: a slice, or a strided view supplied by a caller.
pub trait RewardColumn: Sync {
    fn len(&self) -> usize;
    /// The i-th reward as f64 (i < len).
    fn get(&self, i: usize) -> f64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The argument and index by which errors name element i (a column may join several arguments).
    fn name(&self, i: usize) -> (&'static str, usize) {
        ("rewards", i)
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

    /// Validates the input (lengths, finite rewards, labels in range, num_bins) without sorting it:
    /// (number of groups, number of bins).
    pub fn check(&self) -> Result<(usize, usize)> {
        let rows = Validated::new(self)?;
        Ok((rows.num_groups, rows.num_bins))
    }
}

/// An explicit number of bins, checked: the one home of "num_bins >= 2".
pub fn check_num_bins(num_bins: usize) -> Result<usize> {
    if num_bins < 2 {
        return Err(MmdError::InvalidArgument(format!(
            "num_bins must be >= 2, got {num_bins}"
        )));
    }
    Ok(num_bins)
}

/// An input's rows read and validated: rewards, and the bin and group of each row.
struct Validated {
    values: Vec<f64>,
    bins: Vec<usize>,
    groups: Option<Vec<usize>>,
    num_bins: usize,
    num_groups: usize,
}

impl Validated {
    fn new(input: &Input) -> Result<Self> {
        let n = input.rewards.len();
        if n == 0 {
            return Err(MmdError::Empty { name: "rewards" });
        }
        check_length("bins", input.bins.len(), n)?;
        let values = read_rewards(input.rewards)?;
        let bins = read_labels("bins", input.bins)?;
        let num_bins = match input.num_bins {
            Some(m) => check_num_bins(m)?,
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
                check_length("groups", column.len(), n)?;
                Some(read_labels("groups", column)?)
            }
            None => None,
        };
        let num_groups = groups
            .as_ref()
            .map_or(1, |g| g.iter().max().map_or(1, |&g| g + 1));
        Ok(Self {
            values,
            bins,
            groups,
            num_bins,
            num_groups,
        })
    }
}

fn check_length(name: &'static str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(MmdError::LengthMismatch {
            name,
            expected,
            got,
        });
    }
    Ok(())
}

fn read_rewards(column: &dyn RewardColumn) -> Result<Vec<f64>> {
    let values: Vec<f64> = (0..column.len()).map(|i| column.get(i)).collect();
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        let (name, index) = column.name(at);
        return Err(MmdError::NonFinite {
            name,
            index,
            value: values[at],
        });
    }
    Ok(values)
}

fn read_labels(name: &'static str, column: &dyn LabelColumn) -> Result<Vec<usize>> {
    (0..column.len())
        .map(|index| {
            let value = column.get(index);
            usize::try_from(value).map_err(|_| MmdError::Negative { name, index, value })
        })
        .collect()
}

/// The rewards sorted by cell c = group * num_bins + bin, input order kept within a cell (a stable
/// counting sort). The segment of cell c is `starts[c]..starts[c + 1]`.
pub struct Layout {
    pub values: Vec<f64>,
    /// `order[k]` is the input index of sorted position k.
    pub order: Vec<usize>,
    pub num_bins: usize,
    pub num_groups: usize,
    pub starts: Vec<usize>,
}

impl Layout {
    /// Validates the input (see `Input::check`) and sorts it.
    pub fn new(input: &Input) -> Result<Self> {
        let rows = Validated::new(input)?;
        let m = rows.num_bins;
        let cell_of = |i: usize| rows.groups.as_ref().map_or(0, |g| g[i]) * m + rows.bins[i];
        Ok(Self::by_cell(&rows.values, cell_of, rows.num_groups, m))
    }

    /// The counting sort: `values[i]` goes to cell `cell_of(i)` (< num_groups * num_bins).
    fn by_cell(
        values: &[f64],
        cell_of: impl Fn(usize) -> usize,
        num_groups: usize,
        num_bins: usize,
    ) -> Self {
        let (n, cells) = (values.len(), num_groups * num_bins);
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
        Self {
            values: order.iter().map(|&i| values[i]).collect(),
            order,
            num_bins,
            num_groups,
            starts,
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Number of samples of each cell (group-major).
    pub fn counts(&self) -> Vec<usize> {
        self.starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The cell of every sorted position.
    pub fn cells(&self) -> Vec<usize> {
        let mut cells = Vec::with_capacity(self.len());
        for (cell, w) in self.starts.windows(2).enumerate() {
            cells.extend(std::iter::repeat_n(cell, w[1] - w[0]));
        }
        cells
    }

    /// The sorted positions of group g.
    pub fn group(&self, g: usize) -> std::ops::Range<usize> {
        self.starts[g * self.num_bins]..self.starts[(g + 1) * self.num_bins]
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

    /// The rows group by group with their bins, ordered within each group as `order` says.
    pub fn rows(&self, order: RowOrder) -> Rows {
        let m = self.num_bins;
        let mut rows = Rows {
            values: Vec::with_capacity(self.len()),
            labels: Vec::with_capacity(self.len()),
            starts: vec![0],
            num_bins: m,
            counts: self.counts().iter().map(|&c| c as u64).collect(),
        };
        for g in 0..self.num_groups {
            // (reward, input index, bin): unique keys, so the unstable sort is deterministic.
            let mut group: Vec<(f64, usize, u32)> = (0..m)
                .flat_map(|p| {
                    let cell = g * m + p;
                    (self.starts[cell]..self.starts[cell + 1])
                        .map(move |k| (self.values[k], self.order[k], p as u32))
                })
                .collect();
            match order {
                RowOrder::Input => group.sort_unstable_by_key(|row| row.1),
                RowOrder::Reward => {
                    group.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
                }
            }
            rows.values.extend(group.iter().map(|row| row.0));
            rows.labels.extend(group.iter().map(|row| row.2));
            rows.starts.push(rows.values.len());
        }
        rows
    }
}

/// How `Layout::rows` orders the rows within a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// As they came (what a relabelling of the input permutes).
    Input,
    /// Ascending reward, ties in input order (what the scan sweeps).
    Reward,
}

/// Rows group by group with their bin labels in [0, num_bins): what the audit's permutations
/// relabel, derived from a `Layout`.
pub struct Rows {
    pub values: Vec<f64>,
    pub labels: Vec<u32>,
    /// Group g holds rows starts[g]..starts[g + 1].
    pub starts: Vec<usize>,
    pub num_bins: usize,
    /// (G, M) rows per group and bin.
    pub counts: Vec<u64>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn num_groups(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn group(&self, g: usize) -> std::ops::Range<usize> {
        self.starts[g]..self.starts[g + 1]
    }

    /// The layout of these rows under other bin labels (one per row, same groups, e.g. permuted).
    pub fn layout_with(&self, labels: &[u32]) -> Layout {
        let mut group_of = Vec::with_capacity(self.len());
        for g in 0..self.num_groups() {
            group_of.extend(std::iter::repeat_n(g, self.group(g).len()));
        }
        let m = self.num_bins;
        let cell_of = |i: usize| group_of[i] * m + labels[i] as usize;
        Layout::by_cell(&self.values, cell_of, self.num_groups(), m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_by_cell_and_derives_row_orders() {
        let rewards = vec![0.5, 0.1, 0.9, 0.1, 0.3, 0.7];
        let bins = vec![1i64, 0, 1, 1, 0, 0];
        let groups = vec![1i64, 0, 0, 1, 1, 0];
        let input = Input::new(&rewards, &bins).with_groups(&groups);
        assert_eq!(input.check().unwrap(), (2, 2));
        let layout = Layout::new(&input).unwrap();
        assert_eq!(layout.values, vec![0.1, 0.7, 0.9, 0.3, 0.5, 0.1]);
        assert_eq!(layout.counts(), vec![2, 1, 1, 2]);
        assert_eq!(layout.to_input_order(&layout.values), rewards);
        let by_input = layout.rows(RowOrder::Input);
        assert_eq!(by_input.values, vec![0.1, 0.9, 0.7, 0.5, 0.1, 0.3]);
        assert_eq!(by_input.labels, vec![0, 1, 0, 1, 1, 0]);
        let by_reward = layout.rows(RowOrder::Reward);
        assert_eq!(by_reward.values, vec![0.1, 0.7, 0.9, 0.1, 0.3, 0.5]);
        assert_eq!(by_reward.labels, vec![0, 0, 1, 1, 0, 1]);
        let again = by_input.layout_with(&by_input.labels);
        assert_eq!(again.values, layout.values);
    }

    #[test]
    fn refuses_bad_input_naming_it() {
        let message = |rewards: Vec<f64>, bins: Vec<i64>, m: Option<usize>| {
            let mut input = Input::new(&rewards, &bins);
            input.num_bins = m;
            input.check().unwrap_err().to_string()
        };
        assert_eq!(message(vec![], vec![], None), "rewards is empty");
        assert_eq!(
            message(vec![1.0, f64::NAN], vec![0, 1], None),
            "rewards[1] is NaN: values must be finite"
        );
        assert_eq!(
            message(vec![1.0, 2.0], vec![0, 2], Some(2)),
            "bins[1] = 2 is out of range [0, 2)"
        );
        assert_eq!(
            message(vec![1.0, 2.0], vec![0, -1], None),
            "bins[1] = -1 is negative"
        );
        assert_eq!(
            message(vec![1.0, 2.0], vec![0], None),
            "bins has length 1 but rewards has length 2"
        );
        assert_eq!(
            message(vec![1.0, 2.0], vec![0, 1], Some(1)),
            "num_bins must be >= 2, got 1"
        );
    }
}
