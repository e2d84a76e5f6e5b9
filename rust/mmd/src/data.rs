//! Input columns, their validation (the one place where rewards, labels and num_bins are checked),
//! and the layout every computation works on: the rewards sorted by cell (group, bin), over the
//! occupied bins and groups only. Every statistic is a function of the occupied cells alone (an
//! empty bin has no computable pair), so a label of 10^9 or num_bins = 2^63 costs nothing; only
//! results the caller asks for in full, (G, M, M), are expanded, after a size check.

use crate::error::{MmdError, Result};
use crate::limits;

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
    /// The i-th label (i < len), widened so that any integer type's values are told apart.
    fn get(&self, i: usize) -> i128;
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
columns!(LabelColumn, i128, i64, i32, u64, u32);

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
                value: bins[index] as i128,
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

pub(crate) fn read_rewards(column: &dyn RewardColumn) -> Result<Vec<f64>> {
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

/// Labels as indices: >= 0 and at most i64::MAX (so that max + 1 is a size).
fn read_labels(name: &'static str, column: &dyn LabelColumn) -> Result<Vec<usize>> {
    (0..column.len())
        .map(|index| {
            let value = column.get(index);
            if value < 0 {
                return Err(MmdError::Negative { name, index, value });
            }
            if value > i128::from(i64::MAX) {
                return Err(MmdError::LabelTooLarge { name, index, value });
            }
            usize::try_from(value).map_err(|_| MmdError::LabelTooLarge { name, index, value })
        })
        .collect()
}

/// The rewards sorted by cell c = group * num_bins + bin over the occupied groups and bins, input
/// order kept within a cell (a stable counting sort). The segment of cell c is
/// `starts[c]..starts[c + 1]`.
pub struct Layout {
    pub values: Vec<f64>,
    /// `order[k]` is the input index of sorted position k.
    pub order: Vec<usize>,
    /// Occupied bins and groups (the sizes every computation works with).
    pub num_bins: usize,
    pub num_groups: usize,
    pub starts: Vec<usize>,
    /// Which input labels the occupied ones are, and the input's sizes.
    pub occupied: Occupied,
}

impl Layout {
    /// Validates the input (see `Input::check`) and sorts it.
    pub fn new(input: &Input) -> Result<Self> {
        let mut rows = Validated::new(input)?;
        let bins = compact(&mut rows.bins, rows.num_bins);
        let groups = match rows.groups.as_mut() {
            Some(labels) => compact(labels, rows.num_groups),
            None => vec![0],
        };
        let (g, m) = (groups.len(), bins.len());
        limits::check(
            &|| format!("{g} occupied groups x {m} occupied bins"),
            "table of kernel sums per bin pair (and as many weights and MMD^2 values)",
            &[g, m, m],
            4,
        )?;
        let cell_of =
            |i: usize| rows.groups.as_ref().map_or(0, |labels| labels[i]) * m + rows.bins[i];
        let mut layout = Self::by_cell(&rows.values, cell_of, g, m);
        layout.occupied = Occupied {
            bins,
            groups,
            num_bins: rows.num_bins,
            num_groups: rows.num_groups,
        };
        Ok(layout)
    }

    /// The smallest and largest reward.
    pub fn range(&self) -> (f64, f64) {
        self.values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &x| {
                (low.min(x), high.max(x))
            })
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
            occupied: Occupied::all(num_groups, num_bins),
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
            // (key, input index, bin, reward bits), ordered as integers: (key, input index) is
            // unique, so the unstable sort is deterministic.
            let key = |x: f64| match order {
                RowOrder::Input => 0,
                RowOrder::Reward => total_order(x),
            };
            let mut group: Vec<(i64, usize, u32, u64)> = Vec::with_capacity(self.group(g).len());
            for p in 0..m {
                let cell = g * m + p;
                for k in self.starts[cell]..self.starts[cell + 1] {
                    let x = self.values[k];
                    group.push((key(x), self.order[k], p as u32, x.to_bits()));
                }
            }
            group.sort_unstable();
            rows.values
                .extend(group.iter().map(|row| f64::from_bits(row.3)));
            rows.labels.extend(group.iter().map(|row| row.2));
            rows.starts.push(rows.values.len());
        }
        rows
    }
}

/// An integer that orders like `f64::total_cmp`.
fn total_order(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
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

/// Relabels `labels` (each < size) in place by their rank among the labels that occur; returns
/// those labels, ascending. O(n) with a table when size is O(n), else by sorting the labels.
fn compact(labels: &mut [usize], size: usize) -> Vec<usize> {
    if size <= 2 * labels.len() + 1024 {
        let mut rank = vec![usize::MAX; size];
        labels.iter().for_each(|&l| rank[l] = 0);
        let mut occupied = Vec::new();
        for (label, slot) in rank.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = occupied.len();
                occupied.push(label);
            }
        }
        labels.iter_mut().for_each(|l| *l = rank[*l]);
        occupied
    } else {
        let mut occupied = labels.to_vec();
        occupied.sort_unstable();
        occupied.dedup();
        for l in labels.iter_mut() {
            *l = occupied.partition_point(|&o| o < *l);
        }
        occupied
    }
}

/// The occupied labels of a layout: compact bin p is input bin `bins[p]`, compact group g input
/// group `groups[g]`, of the input's num_bins and num_groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Occupied {
    pub bins: Vec<usize>,
    pub groups: Vec<usize>,
    pub num_bins: usize,
    pub num_groups: usize,
}

impl Occupied {
    /// Every label occupied (nothing to expand).
    pub fn all(num_groups: usize, num_bins: usize) -> Self {
        Self {
            bins: (0..num_bins).collect(),
            groups: (0..num_groups).collect(),
            num_bins,
            num_groups,
        }
    }

    /// (G, M, M) from compact (G', M', M') values: zero diagonals, NaN off the occupied pairs.
    pub fn expand_matrices(&self, compact: &[f64]) -> Vec<f64> {
        let (g, m, mc) = (self.num_groups, self.num_bins, self.bins.len());
        let mut out = vec![f64::NAN; g * m * m];
        for cell in 0..g * m {
            out[cell * m + cell % m] = 0.0;
        }
        for (cg, &group) in self.groups.iter().enumerate() {
            for (cp, &p) in self.bins.iter().enumerate() {
                for (cq, &q) in self.bins.iter().enumerate() {
                    out[(group * m + p) * m + q] = compact[(cg * mc + cp) * mc + cq];
                }
            }
        }
        out
    }

    /// (M, M) from compact (M', M') values, `diagonal` on the diagonal and NaN elsewhere.
    pub fn expand_pairs(&self, compact: &[f64], diagonal: f64) -> Vec<f64> {
        let (m, mc) = (self.num_bins, self.bins.len());
        let mut out = vec![f64::NAN; m * m];
        (0..m).for_each(|p| out[p * m + p] = diagonal);
        for (cp, &p) in self.bins.iter().enumerate() {
            for (cq, &q) in self.bins.iter().enumerate() {
                if p != q {
                    out[p * m + q] = compact[cp * mc + cq];
                }
            }
        }
        out
    }

    /// (G, M) from compact (G', M') counts, zero elsewhere.
    pub fn expand_counts(&self, compact: &[u64]) -> Vec<u64> {
        let (m, mc) = (self.num_bins, self.bins.len());
        let mut out = vec![0; self.num_groups * m];
        for (cg, &group) in self.groups.iter().enumerate() {
            for (cp, &p) in self.bins.iter().enumerate() {
                out[group * m + p] = compact[cg * mc + cp];
            }
        }
        out
    }

    /// The compact (G', M', M') entries of a full (G, M, M) array.
    pub fn gather(&self, full: &[f64]) -> Vec<f64> {
        let m = self.num_bins;
        let mut out = Vec::with_capacity(self.groups.len() * self.bins.len().pow(2));
        for &group in &self.groups {
            for &p in &self.bins {
                out.extend(self.bins.iter().map(|&q| full[(group * m + p) * m + q]));
            }
        }
        out
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
    fn works_on_occupied_labels_only() {
        let rewards = vec![0.5, 0.1, 0.9, 0.4];
        let bins = vec![7i64, 1_000_000_000, 7, 3];
        let groups = vec![5i64, 5, 9, 5];
        let input = Input::new(&rewards, &bins).with_groups(&groups);
        assert_eq!(input.check().unwrap(), (10, 1_000_000_001));
        let layout = Layout::new(&input).unwrap();
        assert_eq!((layout.num_groups, layout.num_bins), (2, 3));
        assert_eq!(layout.occupied.bins, vec![3, 7, 1_000_000_000]);
        assert_eq!(layout.occupied.groups, vec![5, 9]);
        assert_eq!(layout.values, vec![0.4, 0.5, 0.1, 0.9]);
        let mut dense = vec![4usize, 1, 4, 9];
        assert_eq!(compact(&mut dense, 10), vec![1, 4, 9]);
        assert_eq!(dense, vec![1, 0, 1, 2]);
        let occupied = Occupied {
            bins: vec![0, 2],
            groups: vec![1],
            num_bins: 3,
            num_groups: 2,
        };
        let full = occupied.expand_matrices(&[0.0, 5.0, 5.0, 0.0]);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let nan = f64::NAN;
        let expected = [
            0.0, nan, nan, nan, 0.0, nan, nan, nan, 0.0, 0.0, nan, 5.0, nan, 0.0, nan, 5.0, nan,
            0.0,
        ];
        assert_eq!(bits(&full), bits(&expected));
        assert_eq!(occupied.gather(&full), vec![0.0, 5.0, 5.0, 0.0]);
        assert_eq!(occupied.expand_counts(&[3, 4]), vec![0, 0, 0, 3, 0, 4]);
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
        let (rewards, huge) = (vec![1.0, 2.0], vec![0u64, u64::MAX]);
        assert_eq!(
            Input::new(&rewards, &huge).check().unwrap_err().to_string(),
            "bins[1] = 18446744073709551615 is too large: labels must be at most 2^63 - 1"
        );
    }
}
