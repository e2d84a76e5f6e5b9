"""Run one benchmark case in a forked child: time limit, memory cap, peak-memory measure.

Every case runs in its own ``os.fork()`` child of a process that has imported the libraries but never
computed with them (so no OpenMP or rayon thread pool exists yet at fork time). The child

* caps its address space with ``RLIMIT_AS`` at (its size at fork) + ``mem_cap`` bytes, so a method
  that needs more raises ``MemoryError`` / torch's "can't allocate memory" and is reported as
  ``oom`` instead of swapping the shared machine;
* builds its inputs, reads ``ru_maxrss`` (the resident high-water mark, KiB on Linux), runs the case
  and reads ``ru_maxrss`` again: ``peak_mib`` is the growth of the peak resident set during the case,
  i.e. the extra memory the method needed on top of its inputs (same measure for numpy, torch, numba
  and Rust allocations; 1 MiB resolution is realistic, small cases read ~0);
* sends a JSON-able dict back through a pipe.

The parent kills the child after ``time_limit`` seconds (``timeout``). A child that dies without
answering is reported as ``crashed`` with its signal and the end of its stderr (which goes to a
temporary file, so peers' warnings do not clutter the run), or as ``oom`` when that stderr says an
allocation failed (Rust aborts with "memory allocation of N bytes failed" under the cap).
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import select
import signal
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable

OK, TIMEOUT, OOM, ERROR, CRASHED = "ok", "timeout", "oom", "error", "crashed"

_OOM_MARKERS = ("can't allocate memory", "out of memory", "cannot allocate memory", "unable to allocate")


def run_isolated(task: Callable[[], dict], *, time_limit: float, mem_cap_bytes: int) -> dict:
    """Run ``task()`` in a forked child; return its dict plus ``status`` and ``peak_mib``.

    ``task`` must build its own inputs (inside the child) and return JSON-able values.
    """
    with tempfile.TemporaryFile() as stderr_file:
        return _run(task, time_limit, mem_cap_bytes, stderr_file)


def _run(task, time_limit, mem_cap_bytes, stderr_file) -> dict:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        os.dup2(stderr_file.fileno(), 2)
        faulthandler.disable()  # a crash is reported by the parent; no dump into the harness's output
        payload = _child(task, mem_cap_bytes)
        with os.fdopen(write_fd, "w") as pipe:
            pipe.write(json.dumps(payload))
        os._exit(0)
    os.close(write_fd)
    chunks, deadline = [], time.monotonic() + time_limit
    with os.fdopen(read_fd, "r") as pipe:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"status": TIMEOUT, "detail": f"killed after {time_limit:.0f} s"}
            ready, _, _ = select.select([pipe], [], [], min(remaining, 1.0))
            if ready:
                chunk = pipe.read()  # the child writes once and exits: read to EOF
                chunks.append(chunk)
                break
    _, wait_status = os.waitpid(pid, 0)
    text = "".join(chunks)
    if not text:
        sig = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        stderr_file.seek(0)
        lines = [line for line in stderr_file.read().decode(errors="replace").splitlines() if line.strip()]
        allocation = [line for line in lines if "memory allocation of" in line]
        if allocation:
            return {"status": OOM, "detail": f"child aborted: {allocation[-1].strip()[:150]}"}
        last = lines[-1].strip()[:150] if lines else ""
        return {"status": CRASHED, "detail": f"child died (signal {sig}) {last}".strip()}
    return json.loads(text)


def _child(task: Callable[[], dict], mem_cap_bytes: int) -> dict:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm") as statm:
            size_now = int(statm.read().split()[0]) * page
        limit = size_now + mem_cap_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = task()
        result.setdefault("status", OK)
        return result
    except MemoryError as exc:
        return {"status": OOM, "detail": f"MemoryError {exc}"[:200]}
    except Exception as exc:  # noqa: BLE001 -- a peer failing is a result to report, not a harness crash
        message = f"{type(exc).__name__}: {exc}"
        if any(marker in message.lower() for marker in _OOM_MARKERS):
            return {"status": OOM, "detail": message[:200]}
        return {"status": ERROR, "detail": message[:300], "trace": traceback.format_exc()[-1500:]}


def peak_rss_kib() -> int:
    """The resident-set high-water mark of this process, KiB (Linux ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(step: Callable[[], object], *, budget: float, max_repeats: int = 7) -> dict:
    """Median wall time of ``step()`` after one untimed warm-up call, plus the peak-memory growth.

    Repeats until ``max_repeats`` runs or until ``budget`` seconds are used (at least one timed run).
    When the warm-up alone took more than ``budget / 2`` it is reported as the single measurement
    (``repeats = 1``, ``includes_warmup = True``) rather than running the slow case again.
    Returns ``{"time_s", "times_s", "repeats", "includes_warmup", "peak_mib", "output"}`` where
    ``output`` is what the last call returned.
    """
    rss_before = peak_rss_kib()
    start = time.perf_counter()
    output = step()
    warmup = time.perf_counter() - start
    times: list[float] = []
    includes_warmup = False
    if warmup > budget / 2:
        times, includes_warmup = [warmup], True
    else:
        spent = warmup
        while len(times) < max_repeats and (spent < budget or not times):
            t0 = time.perf_counter()
            output = step()
            elapsed = time.perf_counter() - t0
            times.append(elapsed)
            spent += elapsed
            if len(times) >= 3 and spent > budget / 2:
                break
    peak_mib = (peak_rss_kib() - rss_before) / 1024.0
    return {
        "time_s": statistics.median(times),
        "times_s": times,
        "repeats": len(times),
        "includes_warmup": includes_warmup,
        "peak_mib": round(peak_mib, 1),
        "output": output,
    }
