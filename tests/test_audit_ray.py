"""The Ray engine equals the local one: a local Ray cluster started by the test summarises the
partitions on its workers and the driver merges them."""

from __future__ import annotations

import causal_rewards as cr
import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason='the Ray engine needs pip install "causal-rewards[ray]"')
ray_data = pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def cluster():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    except (
        RuntimeError,
        OSError,
        ConnectionError,
        ValueError,
    ) as error:  # pragma: no cover - machine-dependent
        pytest.skip(f"a local Ray cluster cannot start here: {error}")
    yield
    ray.shutdown()


def frame(n, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 3, n)
    return pd.DataFrame(
        {
            "reward": rng.normal(size=n) + 0.2 * b,
            "bin": b,
            "group": rng.integers(0, 2, n),
            "length": rng.integers(1, 300, n),
        }
    )


def same(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)])


def assert_same(a, b):
    assert a.method == b.method and a.n == b.n and a.statistic == b.statistic
    assert same(a.mmd, b.mmd) and same(a.pvalues, b.pvalues) and same(a.pvalue, b.pvalue)
    assert np.array_equal(a.counts, b.counts) and a.bandwidth == b.bandwidth
    assert np.array_equal(a.null_statistics, b.null_statistics) and a.error_bound == b.error_bound


@pytest.mark.parametrize("kernel,method", [("energy", "scan"), ("rbf", "grid")])
def test_ray_dataset_equals_local(cluster, kernel, method):
    df = frame(6000, seed=1)
    options = {
        "by": "length",
        "bins": 4,
        "kernel": kernel,
        "method": method,
        "permutations": 30,
        "condition": "group",
        "grid_points": 4097,
    }
    local = cr.audit(df, **options)
    dataset = ray_data.from_pandas([df.iloc[rows] for rows in np.array_split(np.arange(len(df)), 4)])
    assert dataset.num_blocks() == 4
    distributed = cr.audit(dataset, chunk_size=700, **options)
    assert_same(local, distributed)


def test_ray_engine_reads_paths(cluster, tmp_path):
    df = frame(5000, seed=2)
    paths = []
    for i, rows in enumerate(np.array_split(np.arange(len(df)), 3)):
        part = df.iloc[rows]
        paths.append(str(tmp_path / f"part{i}.parquet"))
        part.to_parquet(paths[-1])
    options = {
        "by": "bin",
        "binning": "categorical",
        "kernel": "rbf",
        "permutations": 20,
        "grid_points": 2049,
    }
    assert_same(cr.audit(paths, **options), cr.audit(paths, engine="ray", **options))


def test_ray_bad_input(cluster, tmp_path):
    df = frame(300, seed=3)
    with pytest.raises(ValueError, match="'nope' not found"):
        cr.audit(ray_data.from_pandas(df), by="nope", permutations=0)
    df.loc[17, "reward"] = np.nan
    path = tmp_path / "nan.parquet"
    df.to_parquet(path)
    with pytest.raises(ValueError, match=r"nan.parquet row 17: column .reward. is nan"):
        cr.audit(str(path), by="bin", binning="categorical", permutations=0, engine="ray")
    with pytest.raises(ValueError, match=r"nan.parquet: column 'nope' not found"):
        cr.audit(str(path), by="nope", permutations=0, engine="ray")
    rep = cr.audit(str(path), by="bin", binning="categorical", permutations=0, engine="ray", drop_nan=True)
    assert rep.dropped == 1 and rep.n == 299
