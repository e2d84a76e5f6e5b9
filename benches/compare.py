"""This project against its peers, side by side: speed, accuracy, peak memory, scaling plots.

    python benches/compare.py                       # full run (~10 min on 2 cores), writes benches/results/
    python benches/compare.py --quick               # small sizes, into a temporary folder: a smoke test
    python benches/compare.py --alibi-python PATH   # alibi-detect lives in its own venv (it pins numpy<2)

Suites (see benches/peers/*.py for the exact statistic and data of each):
  regulariser   the training penalty (mean pairwise-bin rbf MMD^2, forward + backward), n x M grid
  twosample     two-sample (and k = 5 sample) permutation tests and bare statistics, growing n until
                time or memory run out
  estimators    exact vs linear-time: time, relative error, and test power against time

Every case runs in a forked child with a time limit and an address-space cap (peers/isolate.py);
"peak MiB" is the growth of the child's resident-set high-water mark (ru_maxrss) during the case.
All libraries are pinned to --threads threads. Cases run interleaved (for each n, every method),
so the time ratios compare measurements taken minutes apart at most on the same machine.
Writes results.json, peers.md (the tables) and *.png into --out, and the tables into the marked
section of benches/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings

BENCHES = os.path.dirname(os.path.abspath(__file__))
README_BEGIN, README_END = "<!-- compare.py: begin -->", "<!-- compare.py: end -->"

FULL = {
    "regulariser": {"n": [128, 512, 2048, 8192], "M": [2, 10, 60], "budget": 1.5},
    "twosample": {"n": [100, 300, 1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000], "B": 100, "budget": 2.0},
    "ksample": {"n": [100, 300, 1000, 3000, 10_000, 100_000, 1_000_000], "B": 100, "budget": 2.0},
    "estimators_statistic": {"n": [1000, 3000, 10_000, 30_000, 100_000, 1_000_000, 10_000_000], "budget": 1.0,
                             "exact_limit": 10_000},
    "estimators_power": {"n": [25, 50, 100, 200, 400, 800, 1600, 3200, 6400], "R": 40, "B": 100},
}
QUICK = {
    "regulariser": {"n": [64, 256], "M": [2, 10], "budget": 0.2},
    "twosample": {"n": [50, 200], "B": 20, "budget": 0.2},
    "ksample": {"n": [50, 200], "B": 20, "budget": 0.2},
    "estimators_statistic": {"n": [200, 2000], "budget": 0.2, "exact_limit": 2000},
    "estimators_power": {"n": [50, 100], "R": 5, "B": 20},
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness in ~1 minute")
    parser.add_argument("--out", default=None,
                        help="output folder (default benches/results; with --quick a temporary folder)")
    parser.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds per case before it is killed")
    parser.add_argument("--mem-cap-gib", type=float, default=4.0, help="extra memory a case may take, GiB")
    parser.add_argument("--alibi-python", default=os.environ.get("CRM_ALIBI_PYTHON"),
                        help="interpreter that has alibi-detect (default: $CRM_ALIBI_PYTHON, else this one)")
    parser.add_argument("--suites", default="regulariser,twosample,estimators",
                        help="comma-separated subset of regulariser,twosample,estimators")
    parser.add_argument("--readme", default=None,
                        help="README whose marked section receives the tables (default benches/README.md, "
                             "none with --quick; '' to skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.time_limit <= 0 or args.mem_cap_gib <= 0:
        parser.error("--time-limit and --mem-cap-gib must be > 0")
    if args.out is None:  # a smoke run must not overwrite the committed results
        args.out = os.path.join(tempfile.gettempdir(), "crm-peers-quick") if args.quick else os.path.join(BENCHES, "results")
    if args.readme is None:
        args.readme = "" if args.quick else os.path.join(BENCHES, "README.md")
    args.suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = set(args.suites) - {"regulariser", "twosample", "estimators"}
    if unknown:
        parser.error(f"unknown suites: {sorted(unknown)}")
    return args


class Bench:
    """Runs cases, remembers results and per-method size ladders."""

    def __init__(self, args, runtime):
        self.args = args
        self.runtime = runtime
        self.results: list[dict] = []
        self.ladders: dict[tuple, object] = {}
        self.mem_cap = int(args.mem_cap_gib * 2**30)

    def run(self, suite, key, label, family, params, *, ladder_key, n, unavailable=None, python=None, extra=None):
        row = {"suite": suite, "key": key, "label": label, "family": family, "n": n, **(extra or {})}
        ladder = self.ladders.setdefault(ladder_key, self.runtime.SizeLadder(self.args.time_limit))
        skip = unavailable or ladder.reason_to_skip(n)
        if skip:
            row.update(status="not installed" if unavailable else "skipped", detail=skip)
        else:
            start = time.perf_counter()
            if python:
                result = self.runtime.run_case_in(python, suite, params, self.args.threads,
                                                  time_limit=self.args.time_limit, mem_cap_bytes=self.mem_cap)
            else:
                result = self.runtime.run_case_here(suite, params, self.args.threads,
                                                    time_limit=self.args.time_limit, mem_cap_bytes=self.mem_cap)
            wall = time.perf_counter() - start
            result.pop("trace", None)
            row.update(result)
            row["wall_s"] = round(wall, 2)
            # a power case runs R tests: extrapolate its total, not one test
            ladder.record(n, result, total_time=wall if suite == "estimators_power" else None)
        self.results.append(row)
        shown = row.get("time_s")
        print(f"  {suite:21s} {key:22s} n={n:<9d}{' M=' + str(extra['M']) if extra and 'M' in extra else ''} "
              f"{row['status']:10s} {'' if shown is None else f'{shown:.4g} s'} {row.get('detail', '')[:60]}",
              flush=True)
        return row


def run_regulariser(bench, plan, args):
    from peers import regulariser

    unavailable = {
        "geomloss_tensorized": bench.runtime.importable("geomloss"),
        "geomloss_online": bench.runtime.importable("geomloss") or bench.runtime.importable("pykeops"),
        "crm_torch_rust": bench.runtime.importable("causal_rewards.ops.torch_ops"),
        "crm_torch_ref": bench.runtime.importable("causal_rewards.ops.torch_ops"),
    }
    for n in plan["n"]:
        for num_bins in plan["M"]:
            for key, label, family, _ in regulariser.METHODS:
                params = {"key": key, "n": n, "num_bins": num_bins, "seed": args.seed, "budget": plan["budget"]}
                bench.run("regulariser", key, label, family, params, ladder_key=("regulariser", key, num_bins),
                          n=n, unavailable=unavailable.get(key), extra={"M": num_bins, "group": f"M={num_bins}"})


def run_twosample(bench, plan, args, alibi_python):
    from peers import twosample

    for n in plan["n"]:
        for key, (label, family, _, _, group, interpreter) in twosample.METHODS.items():
            python, unavailable = None, None
            if interpreter == "alibi":
                python, unavailable = alibi_python
            elif key.startswith("hyppo"):
                unavailable = bench.runtime.importable("hyppo")
            elif key.startswith("dcor"):
                unavailable = bench.runtime.importable("dcor")
            params = {"key": key, "n": n, "permutations": plan["B"], "seed": args.seed, "budget": plan["budget"]}
            bench.run("twosample", key, label, family, params, ladder_key=("twosample", key), n=n,
                      unavailable=unavailable, python=python, extra={"group": group, "B": plan["B"]})


def run_ksample(bench, plan, args):
    from peers import ksample

    for n in plan["n"]:
        for key, (label, family, _, _, group) in ksample.METHODS.items():
            unavailable = None
            if key.startswith("hyppo"):
                unavailable = bench.runtime.importable("hyppo")
            elif key.startswith("dcor"):
                unavailable = bench.runtime.importable("dcor")
            params = {"key": key, "n": n, "permutations": plan["B"], "seed": args.seed, "budget": plan["budget"]}
            bench.run("ksample", key, label, family, params, ladder_key=("ksample", key), n=n,
                      unavailable=unavailable, extra={"group": group, "B": plan["B"], "k": ksample.K})


def run_estimators(bench, plans, args):
    from peers import estimators

    plan = plans["estimators_statistic"]
    for n in plan["n"]:
        for key, (label, _, _, cost, _) in estimators.METHODS.items():
            params = {"key": key, "n": n, "seed": args.seed, "budget": plan["budget"], "exact_limit": plan["exact_limit"]}
            bench.run("estimators_statistic", key, label, "ours", params, ladder_key=("statistic", key), n=n,
                      extra={"cost": cost, "shift": estimators.STATISTIC_SHIFT,
                             "comparator": estimators.EXACT_REFERENCE[estimators.METHODS[key][2]]})
    plan = plans["estimators_power"]
    for n in plan["n"]:
        for key, (label, _, _, cost, _) in estimators.METHODS.items():
            params = {"key": key, "n": n, "repetitions": plan["R"], "permutations": plan["B"], "seed": args.seed}
            bench.run("estimators_power", key, label, "ours", params, ladder_key=("power", key), n=n,
                      extra={"cost": cost, "R": plan["R"], "B": plan["B"], "shift": estimators.SHIFT})


def alibi_interpreter(args, runtime):
    """(python or None, reason unavailable or None): where alibi-detect runs."""
    if args.alibi_python:
        if not os.path.exists(args.alibi_python):
            return None, f"--alibi-python {args.alibi_python} does not exist"
        probe = runtime.versions_in(args.alibi_python)
        if not probe.get("alibi-detect"):
            return None, f"alibi-detect not importable by {args.alibi_python}"
        return args.alibi_python, None
    reason = runtime.importable("alibi_detect")
    return None, (f"alibi-detect not installed here ({reason}); pass --alibi-python" if reason else None)


def machine_info(args) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as info:
            memory = round(int(info.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "memory_gib": memory, "os": platform.platform(),
            "threads_used": args.threads, "gpu": _gpu(), "date_utc": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC"), "load_average_at_start": os.getloadavg()}


def _gpu() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (Triton rows not run)"


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, BENCHES)
    from peers import runtime

    runtime.limit_threads(args.threads)
    # hyppo warns on every test with fewer than 1000 permutations; B is a deliberate choice here
    warnings.filterwarnings("ignore", message="The number of replications is low")
    runtime.preimport()
    plans = QUICK if args.quick else FULL
    alibi_python = alibi_interpreter(args, runtime)
    meta = {"command": "python benches/compare.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            "machine": machine_info(args), "versions": runtime.versions_here(),
            "alibi": {"python": alibi_python[0], "unavailable": alibi_python[1],
                      "versions": runtime.versions_in(alibi_python[0]) if alibi_python[0] else {}},
            "plans": {k: plans[k] for k in plans}, "time_limit_s": args.time_limit, "mem_cap_gib": args.mem_cap_gib}
    bench = Bench(args, runtime)
    started = time.perf_counter()
    if "regulariser" in args.suites:
        print("regulariser (forward + backward):", flush=True)
        run_regulariser(bench, plans["regulariser"], args)
    if "twosample" in args.suites:
        print("two-sample tests:", flush=True)
        run_twosample(bench, plans["twosample"], args, alibi_python)
    if "twosample" in args.suites:
        print("k-sample tests:", flush=True)
        run_ksample(bench, plans["ksample"], args)
    if "estimators" in args.suites:
        print("estimators:", flush=True)
        run_estimators(bench, plans, args)
    meta["total_s"] = round(time.perf_counter() - started, 1)

    from peers import report

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as out:
        json.dump({"meta": meta, "results": bench.results}, out, indent=1)
    markdown = report.write_all(meta, bench.results, args.out)
    if args.readme:
        report.update_readme(args.readme, markdown, args.out, README_BEGIN, README_END)
    print(f"wrote {args.out} in {meta['total_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
