"""The public functions driven with random sizes, labels, scales, input types and options: each call
gives a result or a ValueError / TypeError, never another exception, never NaN or inf where the
inputs were finite, and within a time bound per call (hypothesis' deadline)."""

from __future__ import annotations

from datetime import timedelta

import causal_rewards as cr
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

CLEAR_ERRORS = (ValueError, TypeError)
SETTINGS = settings(
    max_examples=60, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

kernels = st.sampled_from(["rbf", "laplacian", "imq", "energy", "gauss", 3])
estimators = st.sampled_from(["biased", "unbiased", "linear", "fast"])
reductions = st.sampled_from(["mean", "sum", "max", "none", "median"])
bandwidths = st.one_of(
    st.just("median"),
    st.just("wide"),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.floats(1e-300, 1e300), min_size=0, max_size=3),
    st.none(),
)
scales = st.sampled_from([1e-300, 1e-160, 1e-8, 1.0, 1e8, 1e160, 1e300])
labels_top = st.sampled_from([1, 2, 5, 1000, 10**9, 2**62])
num_bins_values = st.one_of(st.none(), st.integers(-3, 2**64), st.just(2.5), st.just(True))


def _rewards(rng, n, scale, kind):
    values = rng.normal(size=n) * scale
    if kind == "list":
        return values.tolist()
    if kind == "float32":
        return values.astype(np.float32)
    if kind == "tensor":
        return torch.from_numpy(values)
    return values


def _labels(rng, n, top, kind):
    labels = rng.choice(np.array([0, 1, top // 2, top], dtype=np.int64), size=n)
    return torch.from_numpy(labels) if kind == "tensor" else labels


def _finite(value) -> bool:
    if isinstance(value, tuple):
        return all(_finite(v) for v in value)
    if isinstance(value, torch.Tensor):
        value = value.detach().numpy()
    array = np.asarray(value, dtype=np.float64)
    return bool(np.isfinite(array[~np.isnan(array)]).all()) and (array.ndim > 0 or not np.isnan(array))


@SETTINGS
@given(
    n=st.integers(0, 25),
    scale=scales,
    kind=st.sampled_from(["numpy", "list", "float32", "tensor"]),
    top=labels_top,
    num_bins=num_bins_values,
    grouped=st.booleans(),
    kernel=kernels,
    bandwidth=bandwidths,
    estimator=estimators,
    reduction=reductions,
    backend=st.sampled_from(["auto", "rust", "torch", "gpu"]),
    seed=st.integers(0, 2**16),
)
def test_statistics(n, scale, kind, top, num_bins, grouped, kernel, bandwidth, estimator, reduction, backend, seed):
    rng = np.random.default_rng(seed)
    label_kind = "tensor" if kind == "tensor" else "numpy"
    rewards = _rewards(rng, n, scale, kind)
    bins = _labels(rng, n, top, label_kind)
    groups = _labels(rng, n, top, label_kind) if grouped else None
    options = {"num_bins": num_bins, "groups": groups, "kernel": kernel, "bandwidth": bandwidth,
               "estimator": estimator, "reduction": reduction, "backend": backend}
    for function in (cr.pairwise_bin_mmd, cr.pairwise_bin_mmd_value_and_grad):
        try:
            result = function(rewards, bins, **options)
        except CLEAR_ERRORS:
            continue
        if reduction != "none":  # the matrix holds NaN where a pair is not computable, by design
            assert _finite(result), (function.__name__, result)


@SETTINGS
@given(
    n=st.integers(0, 20),
    m=st.integers(0, 20),
    scale=scales,
    kind=st.sampled_from(["numpy", "list", "float32", "tensor"]),
    kernel=kernels,
    bandwidth=bandwidths,
    estimator=estimators,
    seed=st.integers(0, 2**16),
)
def test_two_sample_and_median(n, m, scale, kind, kernel, bandwidth, estimator, seed):
    rng = np.random.default_rng(seed)
    x, y = _rewards(rng, n, scale, kind), _rewards(rng, m, scale, kind)
    for call in (
        lambda: cr.mmd(x, y, kernel=kernel, bandwidth=bandwidth, estimator=estimator),
        lambda: cr.median_bandwidth(x),
    ):
        try:
            result = call()
        except CLEAR_ERRORS:
            continue
        assert _finite(result)


@SETTINGS
@given(
    n=st.integers(0, 40),
    scale=scales,
    top=st.sampled_from([1, 2, 4, 1000]),
    bins=st.one_of(st.integers(-1, 3000), st.just(2**70)),
    binning=st.sampled_from(["quantile", "uniform", "categorical", "kmeans"]),
    kernel=kernels,
    estimator=estimators,
    permutations=st.one_of(st.integers(-1, 30), st.just(10**12)),
    method=st.sampled_from(["auto", "exact", "scan", "grid", "fast"]),
    condition=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_audit(n, scale, top, bins, binning, kernel, estimator, permutations, method, condition, seed):
    rng = np.random.default_rng(seed)
    table = {
        "reward": rng.normal(size=n) * scale,
        "length": rng.integers(0, top + 1, size=n),
        "prompt": rng.integers(0, 3, size=n),
    }
    try:
        report = cr.audit(table, by="length", bins=bins, binning=binning, kernel=kernel, estimator=estimator,
                          permutations=permutations, method=method, condition="prompt" if condition else None,
                          seed=seed, progress=False)
    except CLEAR_ERRORS:
        return
    assert np.isfinite(report.statistic)
    assert np.isnan(report.pvalue) or 0 < report.pvalue <= 1


@SETTINGS
@given(
    lam=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(-1.0), st.just(np.float32(2.0))),
    margin=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    batch=st.integers(0, 12),
    scale=scales,
    num_bins=num_bins_values,
    top=labels_top,
    conditional=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_loss(lam, margin, batch, scale, num_bins, top, conditional, seed):
    rng = np.random.default_rng(seed)
    try:
        loss_fn = cr.CausalRewardLoss(lambda_mmd=lam, num_bins=num_bins, conditional=conditional)
        r_c = torch.from_numpy(rng.normal(size=batch) * scale).requires_grad_(True)
        r_r = torch.from_numpy(rng.normal(size=batch) * scale)
        out = loss_fn(r_c, r_r, _labels(rng, batch, top, "tensor"), _labels(rng, batch, top, "tensor"), margin=margin)
        out.loss.backward()
    except CLEAR_ERRORS:
        return
    assert _finite(out.loss) and _finite(r_c.grad)


@SETTINGS
@given(
    values=st.one_of(
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
        st.lists(st.integers(-(2**70), 2**70), max_size=30),
        st.lists(st.text(max_size=3), max_size=30),
        st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=2), st.none()), max_size=30),
    ),
    kind=st.sampled_from(["quantile", "uniform", "categorical"]),
    num_bins=st.one_of(st.integers(-2, 10**7), st.just(2**64)),
)
def test_binner(values, kind, num_bins):
    try:
        binner = cr.Binner(kind, num_bins).fit(values)
        bins = binner.transform(values)
    except CLEAR_ERRORS:
        return
    assert bins.dtype == np.int64 and ((0 <= bins) & (bins < binner.num_bins_)).all()
