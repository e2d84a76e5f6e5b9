"""Worker threads of the Rust core: how many, and whether to use several at all.

Results never depend on the thread count: work is cut into blocks of a fixed size whose results are
combined in order. The count comes from ``set_num_threads``, else the environment variable
``CAUSAL_REWARDS_NUM_THREADS``, else one thread per core. It is capped at ``max_num_threads()`` (4 per
available core; more threads only wait for a core); a larger request, or an environment value that is not
a whole number >= 0, gives a ``RuntimeWarning`` and the cap or the default.
"""

from __future__ import annotations

import warnings

from . import _core
from .options import check_integer

ENVIRONMENT_VARIABLE = "CAUSAL_REWARDS_NUM_THREADS"


def set_num_threads(threads: int) -> None:
    """Uses ``threads`` worker threads from now on (0: one per core), at most ``max_num_threads()``."""
    threads = check_integer(threads, "threads")
    cap = _core.max_num_threads()
    if threads > cap:
        warnings.warn(
            f"set_num_threads({threads}): using {cap} threads, the cap (4 per available core)",
            RuntimeWarning,
            stacklevel=2,
        )
        threads = cap
    _core.set_num_threads(int(threads))


def num_threads() -> int:
    """The number of worker threads the next computation uses (1 when parallelism is off)."""
    return _core.num_threads()


def max_num_threads() -> int:
    """The most worker threads a computation uses: 4 per available core."""
    return _core.max_num_threads()


def set_parallelism(enabled: bool) -> None:
    """Switches multi-threading on or off for this process (a forked child computes sequentially)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {type(enabled).__name__}")
    _core.set_parallelism(enabled)


def _check_environment() -> None:
    """Warns once, at import, when CAUSAL_REWARDS_NUM_THREADS is not a usable thread count."""
    _, warning = _core.environment_threads()
    if warning is not None:
        warnings.warn(warning, RuntimeWarning, stacklevel=3)


_check_environment()
