"""Plumbing shared by compare.py and the worker: threads, dispatch of a case, size ladders, versions."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import math
import os
import subprocess
import sys

from peers.isolate import run_isolated

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "RAYON_NUM_THREADS")
SUITES = ("regulariser", "twosample", "ksample", "estimators_statistic", "estimators_power")
BENCHES_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def limit_threads(threads: int) -> None:
    """Pin every library to ``threads`` threads; must run before numpy / torch / numba / KeOps load."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


#: imported once before any fork (never computed with, so no thread pool exists at fork time): the
#: children start in milliseconds, and their memory cap is measured from a process that already
#: holds these libraries' address space
HEAVY_MODULES = ("numpy", "torch", "causal_rewards", "causal_rewards.ops.torch_ops", "causal_rewards.audit", "geomloss",
                 "pykeops.torch", "hyppo.ksample", "dcor", "alibi_detect.cd", "matplotlib")


def preimport(modules=HEAVY_MODULES) -> dict:
    """Import what is importable among ``modules``; return {module: reason} for those that are not."""
    return {name: reason for name in modules if (reason := importable(name))}


def _suite_runner(suite: str):
    if suite == "regulariser":
        from peers.regulariser import run_case
    elif suite == "twosample":
        from peers.twosample import run_case
    elif suite == "ksample":
        from peers.ksample import run_case
    elif suite == "estimators_statistic":
        from peers.estimators import run_statistic_case as run_case
    elif suite == "estimators_power":
        from peers.estimators import run_power_case as run_case
    else:
        raise ValueError(f"unknown suite {suite!r}; expected one of {SUITES}")
    return run_case


def _child_setup(threads: int) -> None:
    """Runs inside the forked child, before the case: the thread pools are created here."""
    import causal_rewards as cr
    import torch

    torch.set_num_threads(threads)
    cr.set_num_threads(threads)


def run_case_here(suite: str, params: dict, threads: int, *, time_limit: float, mem_cap_bytes: int) -> dict:
    """Run one case of ``suite`` in a forked child of this process (see ``isolate.run_isolated``)."""
    run_case = _suite_runner(suite)

    def task() -> dict:
        _child_setup(threads)
        return run_case(**params)

    return run_isolated(task, time_limit=time_limit, mem_cap_bytes=mem_cap_bytes)


def run_case_in(python: str, suite: str, params: dict, threads: int, *, time_limit: float,
                mem_cap_bytes: int) -> dict:
    """Run one case under another interpreter (``python -m peers.worker``), e.g. alibi-detect's venv."""
    request = json.dumps({"suite": suite, "params": params, "threads": threads, "time_limit": time_limit,
                          "mem_cap_bytes": mem_cap_bytes})
    env = dict(os.environ, PYTHONPATH=BENCHES_DIR, PYTHONWARNINGS="ignore")
    try:
        done = subprocess.run([python, "-m", "peers.worker", request], check=False, capture_output=True, text=True, env=env,
                              timeout=time_limit + 180, cwd=BENCHES_DIR)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "detail": f"worker did not answer within {time_limit + 180:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"status": "error", "detail": f"worker exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


class SizeLadder:
    """Decides, going up in n, whether a method is worth running at the next size.

    After a timeout, out-of-memory or crash at some n, larger sizes are not run (reported as
    ``skipped`` with the reason). Otherwise the time at the next size is extrapolated from the last
    two successful sizes, t(n) = t_last (n / n_last)^a with a the observed log-log slope clamped to
    [1, 2.2]; when that exceeds ``factor * time_limit`` the size is skipped as ``predicted`` (it would
    only burn the time limit of the shared machine).
    """

    def __init__(self, time_limit: float, factor: float = 1.5):
        self.time_limit = time_limit
        self.factor = factor
        self.points: list[tuple[int, float]] = []
        self.stopped: str | None = None

    def reason_to_skip(self, n: int) -> str | None:
        if self.stopped:
            return self.stopped
        if not self.points:
            return None
        n_last, t_last = self.points[-1]
        slope = 2.0
        if len(self.points) >= 2:
            n_prev, t_prev = self.points[-2]
            if t_prev > 0 and n_last > n_prev and t_last > 0:
                slope = math.log(t_last / t_prev) / math.log(n_last / n_prev)
        slope = min(max(slope, 1.0), 2.2)
        predicted = t_last * (n / n_last) ** slope
        if predicted > self.factor * self.time_limit:
            return f"predicted {predicted:.0f} s from the trend (limit {self.time_limit:.0f} s)"
        return None

    def record(self, n: int, result: dict, total_time: float | None = None) -> None:
        status = result.get("status")
        if status == "ok":
            self.points.append((n, total_time if total_time is not None else result["time_s"]))
        elif status in ("timeout", "oom", "crashed"):
            self.stopped = f"after {status} at n={n}"


PEER_DISTRIBUTIONS = ("torch", "numpy", "geomloss", "pykeops", "keopscore", "hyppo", "dcor", "numba", "scipy",
                      "causal-rewards")


def versions_here() -> dict:
    found = {}
    for name in PEER_DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["python"] = sys.version.split()[0]
    return found


def versions_in(python: str) -> dict:
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({d: m.version(d) for d in ('alibi-detect', 'numpy', 'torch')} | "
            "{'python': sys.version.split()[0]}))")
    try:
        done = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True, timeout=120)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {}


def importable(module: str) -> str | None:
    """None if ``module`` imports here, else the reason."""
    try:
        importlib.import_module(module)
        return None
    except Exception as exc:  # noqa: BLE001 -- any import failure means "not available"
        return f"{type(exc).__name__}: {exc}"[:200]
