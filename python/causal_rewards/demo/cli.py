"""`crm demo`, first form: a real pairwise-bin audit of a built-in synthetic example in which the
reward follows response length. (The full demo trains reward models; see the benchmarks issue.)"""

from __future__ import annotations

import numpy as np

from ..functional import pairwise_bin_mmd, pairwise_bin_mmd_value_and_grad


def synthetic_length_example(n: int = 4000, seed: int = 0):
    """Responses whose length drives a biased reward and not an unbiased one."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n)
    length = rng.lognormal(mean=5.0, sigma=0.6, size=n)
    biased = quality + 0.8 * (np.log(length) - 5.0) / 0.6
    unbiased = quality + 0.05 * rng.normal(size=n)
    return length, biased, unbiased


def run(args) -> int:
    length, biased, unbiased = synthetic_length_example(args.n, args.seed)
    edges = np.quantile(length, np.linspace(0, 1, args.bins + 1)[1:-1])
    bins = np.searchsorted(edges, length, side="right")
    print(f"Synthetic example: {args.n} responses, {args.bins} quantile bins of length, rbf kernel, median bandwidth")
    print(f"{'reward model':<22}{'mean pairwise-bin MMD^2':>26}{'max pair':>12}{'|grad| mean':>14}")
    for name, rewards in (("length-biased", biased), ("length-independent", unbiased)):
        value = pairwise_bin_mmd(rewards, bins, bandwidth="median")
        worst = pairwise_bin_mmd(rewards, bins, bandwidth="median", reduction="max")
        _, grad = pairwise_bin_mmd_value_and_grad(rewards, bins, bandwidth="median")
        print(f"{name:<22}{value:>26.6f}{worst:>12.6f}{np.abs(grad).mean():>14.3e}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the demo on built-in data")
    parser.add_argument("--n", type=int, default=4000, help="number of responses")
    parser.add_argument("--bins", type=int, default=10, help="number of length bins")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)
