"""ValueSummary: bounded, mergeable and a function of the multiset of values alone (against a brute
force of its definition), quantile edges within the reported rank error of the exact ones, exact
below the cap, and the same bins from any chunking of an audit."""

from __future__ import annotations

import json
import pickle
import struct

import causal_rewards as cr
import numpy as np
import pytest
from causal_rewards.binning import MAX_CATEGORIES, MAX_KEYS, Binner, CrossedBins, ValueSummary
from hypothesis import given, settings
from hypothesis import strategies as st

SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e308, -1e308, 1.0, 1.0 + 2**-52, -1.0]
values_pool = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-50, 50).map(float),  # ties
    st.floats(min_value=0.5, max_value=4.0),  # keys that share their top bits
    st.integers(0, 2**20).map(lambda i: 1.0 + i * 2.0**-52),  # and all but the lowest
    st.sampled_from(SPECIAL),
)


def order_key(x: float) -> int:
    """The order-preserving integer image of a float64, from its bytes (independent of the module)."""
    (bits,) = struct.unpack("<Q", struct.pack("<d", x + 0.0))
    return (~bits) & (2**64 - 1) if bits >> 63 else bits | 2**63


def reference_table(values, cap):
    """The summary's definition, by brute force: the smallest shift with at most ``cap`` distinct
    keys, and per key its count, smallest and largest value."""
    keys = [order_key(float(v)) for v in values]
    shift = next(s for s in range(64) if cap is None or len({k >> s for k in keys}) <= cap)
    rows: dict[int, list] = {}
    for key, value in zip(keys, values):
        row = rows.setdefault(key >> shift, [0, np.inf, -np.inf])
        row[0] += 1
        row[1], row[2] = min(row[1], value + 0.0), max(row[2], value + 0.0)
    ordered = sorted(rows)
    return shift, ordered, [rows[k] for k in ordered]


def assert_same_summary(a: ValueSummary, b: ValueSummary) -> None:
    assert a.count == b.count and a.table.shift == b.table.shift
    for x, y in zip(a.table.columns, b.table.columns):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    np.testing.assert_array_equal(np.signbit(a.table.mins), np.signbit(b.table.mins))  # +0.0, never -0.0
    assert (a.low, a.high) == (b.low, b.high)


def merged(parts: list[ValueSummary], data) -> ValueSummary:
    """Merges the parts in a random tree: random neighbours, either one receiving the other."""
    parts = list(parts)
    while len(parts) > 1:
        i = data.draw(st.integers(0, len(parts) - 2))
        left, right = parts[i], parts.pop(i + 1)
        parts[i] = left.merge(right) if data.draw(st.booleans()) else right.merge(left)
    return parts[0]


def chunks_of(values: np.ndarray, data) -> list[np.ndarray]:
    cuts = sorted(data.draw(st.lists(st.integers(1, max(1, values.size - 1)), max_size=8)))
    return [c for c in np.split(values, cuts) if c.size]


@settings(max_examples=300, deadline=None)
@given(st.lists(values_pool, min_size=1, max_size=120), st.data())
def test_summary_is_its_definition_whatever_the_chunks_and_merge_order(values, data):
    cap = data.draw(st.integers(2, max(2, len(values))))  # mostly below the distinct values: keys span many
    values = np.array(values, dtype=np.float64)
    whole = ValueSummary.of(values, max_keys=cap)
    shift, keys, rows = reference_table(values.tolist(), cap)
    assert whole.table.shift == shift and whole.table.keys.tolist() == keys
    assert whole.table.counts.tolist() == [r[0] for r in rows]
    assert whole.table.mins.tolist() == [r[1] for r in rows] and whole.table.maxs.tolist() == [
        r[2] for r in rows
    ]
    assert whole.table.size <= cap and whole.exact == (shift == 0)

    values = values[np.array(data.draw(st.permutations(range(values.size))), dtype=np.int64)]
    chunks = chunks_of(values, data)
    assert_same_summary(merged([ValueSummary.of(c, max_keys=cap) for c in chunks], data), whole)
    streamed = ValueSummary(max_keys=cap)  # updates into one summary, as a reader would
    for c in chunks:
        streamed.update(c)
    assert_same_summary(streamed, whole)
    assert_same_summary(pickle.loads(pickle.dumps(streamed)), whole)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-(2**60), 2**60) | st.integers(-300, 300), min_size=1, max_size=100),
    st.integers(2, 30),
    st.data(),
)
def test_integer_columns_summarise_as_their_float64_values(ints, cap, data):
    """Integers counted over their range (linear time) or sorted: the summary of the float64 values."""
    ints = np.array(ints, dtype=np.int64)
    reference = ValueSummary.of(ints.astype(np.float64), max_keys=cap)
    for column in (ints, ints.astype(np.float64), ints.astype(object)):
        parts = [ValueSummary.of(c, max_keys=cap) for c in chunks_of(column, data)]
        assert_same_summary(merged(parts, data), reference)
    small = ints[np.abs(ints) <= 300]
    if small.size:
        assert_same_summary(
            ValueSummary.of(small.astype(np.int16)), ValueSummary.of(small.astype(np.float64))
        )


def higher_quantiles(z: np.ndarray, num_bins: int) -> np.ndarray:
    """numpy's "higher" quantiles at k / M, the definition of the exact quantile edges."""
    return np.quantile(z, np.arange(1, num_bins) / num_bins, method="higher")


def columns():
    rng = np.random.default_rng(7)
    n = 30_000
    yield "normal", rng.normal(size=n)
    yield "lognormal", rng.lognormal(0.0, 2.0, size=n)
    yield "lengths", np.round(np.exp(rng.normal(5.0, 0.8, n))) + 1
    yield "mixed", np.concatenate([np.zeros(n // 3), rng.standard_cauchy(n - n // 3)])
    yield "tiny and huge", rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-300, 300, n)


@pytest.mark.parametrize("cap", [2, 16, 300, 4096])
@pytest.mark.parametrize("num_bins", [2, 7, 20, 1000])
@pytest.mark.parametrize("name,z", list(columns()), ids=[c[0] for c in columns()])
def test_quantile_edges_within_the_reported_rank_error(name, z, num_bins, cap):
    n, sorted_z = z.size, np.sort(z)
    summary = ValueSummary(max_keys=cap)
    for chunk in np.array_split(z, 13):
        summary.update(chunk)
    edges, rank_error = summary.quantile_edges(num_bins)
    exact = higher_quantiles(z, num_bins)
    np.testing.assert_array_equal(
        exact, sorted_z[np.ceil(np.arange(1, num_bins) / num_bins * (n - 1)).astype(int)]
    )
    # the rows between each edge and the exact one, against the reported bound and the key's count
    between = np.abs(np.searchsorted(sorted_z, edges) - np.searchsorted(sorted_z, exact))
    assert between.max() <= rank_error * n * (1 + 1e-12)
    assert rank_error <= summary.table.counts.max() / n
    assert np.isin(edges, z).all()  # observed values, like the exact edges
    if (edges <= z.min()).all():  # a cap of 2 can put every edge into the first key
        with pytest.raises(ValueError, match="single quantile bin .* rank error"):
            Binner("quantile", num_bins).fit_summary(summary)
        return
    binner = Binner("quantile", num_bins).fit_summary(summary)
    assert binner.rank_error_ == rank_error
    np.testing.assert_array_equal(binner.edges_, np.unique(edges[edges > z.min()]))
    if summary.exact:
        assert rank_error == 0.0 and np.array_equal(binner.edges_, Binner("quantile", num_bins).fit(z).edges_)
    else:
        assert summary.table.size <= cap


@pytest.mark.parametrize("cap", [2, 5, 40])
def test_more_bins_than_rows_within_the_rank_error(cap):
    """num_bins >= n: every value above the minimum is an exact edge; the summary keeps one per key."""
    z = np.random.default_rng(8).normal(size=300).round(1)
    binner = Binner("quantile", 1000).fit_summary(ValueSummary.of(z, max_keys=cap))
    exact, sorted_z = Binner("quantile", 1000).fit(z).edges_, np.sort(z)
    assert np.isin(binner.edges_, exact).all() and binner.edges_.size <= cap
    nearest = np.concatenate([[z.min()], binner.edges_])[np.searchsorted(binner.edges_, exact, side="right")]
    between = np.searchsorted(sorted_z, exact) - np.searchsorted(sorted_z, nearest)
    assert 0 < between.max() <= binner.rank_error_ * z.size * (1 + 1e-12)


@pytest.mark.parametrize("name,z", list(columns()), ids=[c[0] for c in columns()])
def test_exact_below_the_cap(name, z):
    z = np.concatenate([z[::10]] * 20)  # 60,000 rows, at most 3,000 distinct values
    summary = ValueSummary()
    for chunk in np.array_split(z, 7):
        summary.update(chunk)
    assert summary.exact and summary.table.shift == 0
    for num_bins in (2, 10, 50):
        binner = Binner("quantile", num_bins).fit_summary(summary)
        assert binner.rank_error_ == 0.0 and binner.exact
        expected = np.unique(higher_quantiles(z, num_bins))
        np.testing.assert_array_equal(binner.edges_, expected[expected > z.min()])
        np.testing.assert_array_equal(binner.edges_, Binner("quantile", num_bins).fit(z).edges_)


def test_bounded_whatever_n():
    rng = np.random.default_rng(3)
    summary = ValueSummary()
    for i in range(40):  # 2 million distinct values, 20 binades and both signs
        summary.update(rng.normal(size=50_000) * 2.0 ** rng.integers(-10, 10))
        assert summary.table.size <= MAX_KEYS and summary.nbytes <= 32 * MAX_KEYS
    assert summary.count == 2_000_000 and not summary.exact
    assert 0 < Binner("quantile", 20).fit_summary(summary).rank_error_ < 1e-3
    tiny = ValueSummary(max_keys=2)
    for chunk in (np.array([-1e308, 1e308]), np.array([5e-324, -5e-324, 0.0]), rng.normal(size=1000)):
        tiny.update(chunk)
        assert tiny.table.size <= 2 and tiny.table.shift <= 63
    assert (tiny.low, tiny.high, tiny.count) == (-1e308, 1e308, 1005)


def test_uniform_needs_only_the_range():
    z = np.random.default_rng(4).lognormal(size=10_000)
    summary = ValueSummary("uniform")
    for chunk in np.array_split(z, 9):
        summary.update(chunk)
    assert summary.table is None and summary.values is None and summary.nbytes == 0
    assert (summary.low, summary.high, summary.count) == (z.min(), z.max(), z.size)
    binner = Binner("uniform", 8).fit_summary(summary)
    np.testing.assert_array_equal(binner.edges_, Binner("uniform", 8).fit(z).edges_)
    assert binner.rank_error_ == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(values_pool, min_size=1, max_size=60), st.data())
def test_uniform_summary_whatever_the_chunks(values, data):
    values = np.array(values, dtype=np.float64)
    parts = [ValueSummary.of(c, "uniform") for c in chunks_of(values, data)]
    summary = merged(parts, data)
    assert summary.count == values.size
    assert [order_key(summary.low), order_key(summary.high)] == [
        order_key(values.min()),
        order_key(values.max()),
    ]
    assert not np.signbit(summary.low) or summary.low < 0


def test_categorical_is_exact_and_bounded():
    labels = np.array(["b", "a", "c", "a", "d"] * 10)
    parts = [ValueSummary.of(c, "categorical") for c in np.array_split(labels, 4)]
    whole = parts[3].merge(parts[0]).merge(parts[2]).merge(parts[1])
    assert whole.values.tolist() == ["a", "b", "c", "d"] and whole.counts.tolist() == [20, 10, 10, 10]
    assert Binner("categorical").fit_summary(whole).rank_error_ == 0.0
    summary = ValueSummary("categorical", "column 'id'")
    summary.update(np.arange(MAX_CATEGORIES))
    with pytest.raises(ValueError, match=rf"column 'id' has more than {MAX_CATEGORIES} distinct values"):
        summary.update(np.array([-1]))
    with pytest.raises(ValueError, match="too many categories"):
        Binner("categorical").fit(np.arange(MAX_CATEGORIES + 1))
    mixed = ValueSummary.of(["a"], "categorical")
    with pytest.raises(TypeError, match="mixes numbers and strings"):
        mixed.merge(ValueSummary.of([1], "categorical"))


def test_rank_error_in_state_and_crossed_bins():
    z = np.random.default_rng(5).normal(size=20_000)
    summary = ValueSummary.of(z, max_keys=64)
    binner = Binner("quantile", 10).fit_summary(summary)
    assert binner.rank_error_ > 0 and not binner.exact
    restored = Binner.from_dict(json.loads(json.dumps(binner.state_dict())))
    assert restored.rank_error_ == binner.rank_error_
    np.testing.assert_array_equal(restored.transform(z), binner.transform(z))
    old = {k: v for k, v in binner.state_dict().items() if k != "rank_error"}  # saved before it existed
    assert Binner().load_state_dict(old).rank_error_ == 0.0
    assert Binner().rank_error_ is None
    exact = Binner("quantile", 10).fit(z)
    assert exact.rank_error_ == 0.0 and exact.state_dict()["rank_error"] == 0.0
    crossed = CrossedBins([binner, exact], ["z", "w"])
    assert crossed.rank_errors == {"z": binner.rank_error_, "w": 0.0}


def test_bad_summaries():
    with pytest.raises(ValueError, match="max_keys must be an integer >= 2"):
        ValueSummary(max_keys=1)
    with pytest.raises(ValueError, match="cannot merge a uniform summary"):
        ValueSummary("quantile").merge(ValueSummary.of([1.0], "uniform"))
    with pytest.raises(ValueError, match="max_keys=8"):
        ValueSummary("quantile").merge(ValueSummary.of([1.0], max_keys=8))
    with pytest.raises(ValueError, match=r"where\[2\] is inf"):
        ValueSummary().update(np.array([1.0, 2.0, np.inf]), "where")
    with pytest.raises(ValueError, match="z has no values"):
        Binner().fit_summary(ValueSummary())
    with pytest.raises(ValueError, match=r"has a single value \(3.0\)"):
        Binner("quantile").fit_summary(ValueSummary.of([3, 3, 3]))
    with pytest.raises(ValueError, match=r"has a single value \(0.0\)"):
        Binner("uniform").fit([0.0, -0.0])


@pytest.mark.parametrize("kernel", ["energy", "rbf"])
def test_audit_bins_are_the_same_for_any_chunk_size(kernel):
    """More distinct values than the cap: chunked reading gives the same (inexact) bins."""
    rng = np.random.default_rng(6)
    n = 3 * MAX_KEYS
    df = {"reward": rng.normal(size=n), "z": rng.lognormal(size=n)}
    reports = [
        cr.audit(df, by="z", bins=10, kernel=kernel, permutations=0, chunk_size=size, progress=False)
        for size in (n, 65_537, 10_007)
    ]
    for other in reports[1:]:
        np.testing.assert_array_equal(other.counts, reports[0].counts)
        assert other.statistic == reports[0].statistic
    summary = ValueSummary.of(df["z"])
    assert not summary.exact
    binner = Binner("quantile", 10).fit_summary(summary)
    np.testing.assert_array_equal(reports[0].counts, np.bincount(binner.transform(df["z"]), minlength=10))
