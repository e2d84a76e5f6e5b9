"""The Ray engine equals the local one: a local Ray cluster started by the test summarises the
partitions on its workers and the driver merges them."""

from __future__ import annotations

import causal_rewards as cr
import numpy as np
import pandas as pd
import pytest
from audit_helpers import assert_same_report

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
    assert_same_report(local, distributed)


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
    assert_same_report(cr.audit(paths, **options), cr.audit(paths, engine="ray", **options))


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


@pytest.mark.parametrize("where", ["dataset", "files"])
def test_ray_task_errors_come_back_with_their_own_type(cluster, tmp_path, where):
    """Ray wraps an error raised in a task (RayTaskError(UserCodeException), keeping only its text):
    the tasks return the user's errors instead, and the driver raises them as they were."""
    df = frame(200, seed=4).assign(reward=lambda d: d.reward.astype(str))
    if where == "dataset":
        source, expected = ray_data.from_pandas(df), "ray dataset row 0: column 'reward' is"
    else:
        source = str(tmp_path / "text.parquet")
        df.to_parquet(source)
        expected = f"{source} row 0: column 'reward' is"
    with pytest.raises(TypeError) as error:
        cr.audit(source, by="bin", binning="categorical", permutations=0, engine="ray")
    assert type(error.value) is TypeError and str(error.value).startswith(expected)
    assert error.value.__cause__ is None and error.value.__context__ is None


def test_ray_file_errors_keep_their_type(cluster, tmp_path):
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 not parquet")
    with pytest.raises(ValueError, match="corrupt.parquet: cannot read parquet file"):
        cr.audit(str(corrupt), by="bin", permutations=0, engine="ray")


def test_ray_engine_refuses_a_file_changed_between_the_passes(cluster, tmp_path, monkeypatch):
    from causal_rewards.audit import ray_engine

    path = tmp_path / "scores.csv"
    frame(300, seed=5).to_csv(path, index=False)
    real = ray_engine.make_plan

    def plan_then_append(*args):
        plan = real(*args)
        with open(path, "a") as out:
            out.write("0.5,1,0,10\n")
        return plan

    monkeypatch.setattr(ray_engine, "make_plan", plan_then_append)
    with pytest.raises(ValueError, match=r"scores.csv: the file changed between the audit's two passes"):
        cr.audit(str(path), by="bin", binning="categorical", permutations=0, engine="ray")


def test_ray_dataset_settings_are_restored(cluster):
    import logging

    dataset = ray_data.from_pandas(frame(500, seed=6))
    context = dataset.context
    context.execution_options.preserve_order, context.enable_progress_bars = False, True
    logger = logging.getLogger("ray.data")
    level = logger.level
    cr.audit(dataset, by="bin", binning="categorical", kernel="energy", permutations=0)
    assert not context.execution_options.preserve_order and context.enable_progress_bars
    assert logger.level == level


def test_cli_ray_errors_are_one_line_without_ray_logs(tmp_path):
    """In a fresh process (the CLI starts its own Ray): stderr holds the error line and nothing else."""
    import subprocess
    import sys

    df = frame(300, seed=7)
    df.loc[17, "reward"] = np.nan
    path = tmp_path / "nan.parquet"
    df.to_parquet(path)
    command = [
        sys.executable,
        "-m",
        "causal_rewards.cli",
        "audit",
        str(path),
        "--by",
        "bin",
        "--engine",
        "ray",
    ]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    expected = f"crm audit: error: {path} row 17: column 'reward' is nan: rewards must be finite"
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(expected), done.stderr


def test_ray_reads_paired_data_as_locally(cluster, tmp_path):
    rng = np.random.default_rng(9)
    n = 1500
    df = pd.DataFrame(
        {
            "reward_chosen": rng.normal(size=n) + 0.3,
            "reward_rejected": rng.normal(size=n),
            "tokens_chosen": rng.integers(5, 300, n),
            "tokens_rejected": rng.integers(5, 300, n),
        }
    )
    options = {"by": "tokens", "bins": 4, "kernel": "rbf", "method": "exact", "condition": False}
    options["permutations"] = 20
    local = cr.audit(df, **options)
    dataset = ray_data.from_pandas([df.iloc[rows] for rows in np.array_split(np.arange(n), 3)])
    assert_same_report(local, cr.audit(dataset, chunk_size=200, **options))
    paths = []
    for i, rows in enumerate(np.array_split(np.arange(n), 2)):
        paths.append(str(tmp_path / f"pairs{i}.parquet"))
        df.iloc[rows].to_parquet(paths[-1])
    by_role = {**options, "condition": None, "method": "scan", "kernel": "energy"}
    assert_same_report(cr.audit(paths, **by_role), cr.audit(paths, engine="ray", **by_role))
    assert cr.audit(paths, engine="ray", **by_role).condition == "role"


def test_ray_derives_variables_from_texts_as_locally(cluster):
    rng = np.random.default_rng(10)
    words = rng.integers(1, 80, 900)
    df = pd.DataFrame({"completion": [" ".join(["w"] * k) for k in words], "reward": rng.normal(size=900)})
    options = {"by": "words", "bins": 3, "kernel": "energy", "permutations": 10}
    dataset = ray_data.from_pandas([df.iloc[:450], df.iloc[450:]])
    assert_same_report(cr.audit(df, **options), cr.audit(dataset, chunk_size=100, **options))
