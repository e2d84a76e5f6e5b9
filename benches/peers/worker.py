"""Run one benchmark case in this interpreter and print its result as one JSON line.

compare.py uses it for peers that live in their own environment (alibi-detect pins numpy < 2 and
transformers < 5, so it gets a separate virtual environment):

    PYTHONPATH=benches /path/to/alibi-env/bin/python -m peers.worker '{"suite": "twosample", ...}'

The JSON object holds ``suite``, ``params`` (keyword arguments of that suite's ``run_case``),
``time_limit``, ``mem_cap_bytes`` and ``threads``.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m peers.worker JSON", file=sys.stderr)
        return 2
    request = json.loads(argv[0])
    from peers.runtime import limit_threads, preimport, run_case_here

    limit_threads(request["threads"])
    preimport()
    result = run_case_here(request["suite"], request["params"], request["threads"],
                           time_limit=request["time_limit"], mem_cap_bytes=request["mem_cap_bytes"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
