"""Per-pair p-values adjusted for multiple testing, and what the number of permutations allows.

- "maxT" (the default): Westfall and Young's step-down maxT, computed by the core from the same
  permutations as the raw p-values, on pair statistics standardised by their permutation mean and
  standard deviation (``rust/mmd/src/audit/pairs.rs`` says why). It uses the joint permutation law of
  the pairs, so it is less conservative than Holm when the pairs' statistics are correlated (they
  share bins), and its smallest value is 1 / (1 + B) whatever the number of pairs.
- "holm": Holm's (1979) step-down adjustment of the raw p-values; its smallest value is
  K / (1 + B) for K pairs, so it needs B >= 20 K - 1 permutations for any pair to reach 0.05.
"""

from __future__ import annotations

import math

import numpy as np

#: The level at which the report says whether a test can reject at all.
LEVEL = 0.05


def upper_pairs(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs p < q (row by row) where the symmetric matrix is not NaN."""
    p, q = np.triu_indices(matrix.shape[0], 1)
    keep = ~np.isnan(matrix[p, q])
    return p[keep], q[keep]


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values of a symmetric (M, M) matrix (NaN entries ignored):
    sorted ascending p_(1) <= ... <= p_(k), adjusted p_(i) = max_{j <= i} min(1, (k - j + 1) p_(j))."""
    p, q = upper_pairs(pvalues)
    order = np.argsort(pvalues[p, q], kind="stable")
    p, q = p[order], q[order]
    k = p.shape[0]
    adjusted = np.full_like(pvalues, np.nan, dtype=np.float64)
    running = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * pvalues[p, q])) if k else np.empty(0)
    adjusted[p, q] = adjusted[q, p] = running
    return adjusted


def smallest_adjusted(adjustment: str, permutations: int, pairs: int) -> float:
    """The smallest adjusted p-value B permutations can give over ``pairs`` pairs."""
    smallest = 1.0 / (1 + permutations)
    return smallest if adjustment == "maxT" else min(1.0, pairs * smallest)


def permutations_needed(adjustment: str, pairs: int) -> int:
    """The fewest permutations with which an adjusted p-value can reach ``LEVEL``."""
    per_pair = 1 if adjustment == "maxT" else pairs
    return math.ceil(per_pair / LEVEL) - 1


def resolution_notes(permutations: int, pairs: int, adjustment: str | None) -> list[str]:
    """Lines saying when the permutations are too few for any p-value to reach ``LEVEL``:
    the global one (``adjustment`` None: no pair tests) and the adjusted pairs'."""
    if permutations == 0:
        return []
    notes = []
    if 1.0 / (1 + permutations) > LEVEL:
        notes.append(
            f"with {permutations} permutations the smallest p-value possible is "
            f"{1 / (1 + permutations):.3g}: "
            f"the test cannot reach {LEVEL}; use at least {math.ceil(1 / LEVEL) - 1} permutations"
        )
    if adjustment is not None and pairs:
        smallest = smallest_adjusted(adjustment, permutations, pairs)
        if smallest > LEVEL:
            needed = permutations_needed(adjustment, pairs)
            notes.append(
                f"with {permutations} permutations and {pairs} bin pairs the smallest {adjustment}-adjusted "
                f"p-value possible is {smallest:.3g}: no pair can reach {LEVEL}; use at least {needed:,} "
                "permutations"
                + (
                    f" (or adjust='maxT', which needs {permutations_needed('maxT', pairs)})"
                    if adjustment == "holm"
                    else ""
                )
            )
    return notes
