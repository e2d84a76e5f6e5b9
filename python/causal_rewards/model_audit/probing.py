"""``causal_rewards.probe``: the counterfactual check behind causal reward modelling. A reward that
does not depend on a spurious variable must not move when only that variable moves, so each
response is scored as it is and as perturbed (``perturb``), and the changes are summarised.

For pair i with rewards R(c_i), R(r_i) of its chosen and rejected responses and P the perturbation:

    d_i = mean over the sides that P changed of R(P(y)) - R(y)    (pairs P leaves alone are left out)
    mean change = mean_i d_i, with a percentile bootstrap interval over pairs (``stats``)
    in SD units: divided by the standard deviation (ddof 1) of the unperturbed rewards of all
                 responses, taken as fixed
    p-value: the paired sign-flip permutation test of a zero mean of d (``stats``)
    flip rate: among the pairs the model orders correctly (R(c) > R(r)) whose rejected response P
               changes, the share where the perturbed rejected response wins: R(P(r)) > R(c)
    accuracy: the share of pairs with R(c) > R(r); also with the rejected response perturbed,
              R(c) > R(P(r)), and with the chosen one perturbed, R(P(c)) > R(r)

Originals and perturbed copies are scored in one longest-first pass by the same loaded model.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from .._io import progress_bar, show_progress
from ..options import check_integer
from .features import text_feature
from .pairs import PairSource
from .perturb import parse_perturbation
from .probe_report import ProbeReport
from .reward_model import ModelSpec, RewardModel
from .scoring import ScoreOptions
from .stats import bootstrap_interval, sign_flip_pvalue

DEFAULT_BOOTSTRAP = 2000
DEFAULT_PERMUTATIONS = 10_000


def _sampled(source: PairSource, total: int, sample: int | None, seed: int) -> list:
    pairs = list(source.pairs())
    if sample is None or sample >= total:
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(total, size=sample, replace=False))
    return [pairs[i] for i in keep]


def _score_all(model: RewardModel, pairs: list, perturbed: dict, batch_size: int, progress):
    """Rewards (4, n): chosen, rejected, perturbed chosen, perturbed rejected (NaN where P changed
    nothing), and the number of perturbed inputs truncated."""
    n = len(pairs)
    items = [(i, side, p.prompt, getattr(p, side)) for side in ("chosen", "rejected") for i, p in enumerate(pairs)]
    items += [(i, side, pairs[i].prompt, text) for (i, side), text in perturbed.items()]
    prompts = None if pairs[0].prompt is None else [item[2] for item in items]
    encodings, truncated = model.encode(prompts, [item[3] for item in items])
    with progress_bar(total=len(items), desc="probing", unit="response", enabled=show_progress(progress)) as bar:
        values = model.rewards(encodings, batch_size=batch_size, bar=bar)
    rewards = np.full((4, n), np.nan)
    for k, (i, side, _, _) in enumerate(items):
        rewards[(0 if side == "chosen" else 1) + (2 if k >= 2 * n else 0), i] = values[k]
    if not np.isfinite(values).all():
        raise ValueError("the model gave a non-finite reward: a dtype with more range (--dtype float32) may help")
    return rewards, int(truncated[2 * n :].sum())


def _perturbed(pairs: list, perturbation) -> dict:
    """(pair index, side) -> perturbed text, for the responses the perturbation changes."""
    out = {}
    for side in ("chosen", "rejected"):
        for i, pair in enumerate(pairs):
            text = perturbation.apply(getattr(pair, side))
            if text != getattr(pair, side):
                out[i, side] = text
    if not out:
        raise ValueError(f"perturbation {perturbation.name!r} changed no response")
    return out


def _feature_change(perturbation, pairs: list, perturbed: dict) -> float:
    """The mean change of the perturbation's feature over the responses it changed."""
    keys = list(perturbed)
    before = [getattr(pairs[i], side) for i, side in keys]
    after = [perturbed[key] for key in keys]
    return float(np.mean(text_feature(perturbation.feature, after) - text_feature(perturbation.feature, before)))


def probe(model, data, *, perturb, batch_size: int = 16, max_length: int | None = None, device: str = "auto",
          dtype: str = "float32", bootstrap: int = DEFAULT_BOOTSTRAP, permutations: int = DEFAULT_PERMUTATIONS,
          level: float = 0.95, seed: int = 0, sample: int | None = None, progress: bool | None = None) -> ProbeReport:
    """Scores each response and its perturbed copy and reports how the reward moves.

    Args:
        model: a local reward-model folder (as for ``score``); data: pairs in TRL's layouts (as
            for ``score``; a scored file works too).
        perturb: "pad", "pad:N", "agree", "format" or "regex:PATTERN=>REPLACEMENT"
            (``causal_rewards.model_audit.perturb``).
        bootstrap: bootstrap resamples of the interval; level: its coverage.
        permutations: sign-flip permutations (all 2^n sign vectors when 2^n <= permutations).
        seed: seeds the bootstrap, the permutations and ``sample``.
        sample: probe a seeded random sample of this many pairs (default: all).
        batch_size, max_length, device, dtype, progress: as for ``score``.

    Returns:
        A ``ProbeReport``: ``mean_change`` and ``interval`` in reward units, ``mean_change_sd`` and
        ``interval_sd`` in SDs of the rewards, ``pvalue``, ``flip_rate``, accuracies, ``verdict()``,
        ``summary()``, ``to_json(path)``, ``to_html(path)``.
    """
    perturbation = parse_perturbation(perturb)
    options = ScoreOptions.of(batch_size=batch_size, max_length=max_length, device=device, dtype=dtype)
    bootstrap, permutations = check_integer(bootstrap, "bootstrap", 1), check_integer(permutations, "permutations", 1)
    sample = None if sample is None else check_integer(sample, "sample", 1)
    if not (isinstance(level, numbers.Real) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    seed = check_integer(seed, "seed")
    source = PairSource(data)
    pairs = _sampled(source, source.validate(), sample, seed)
    perturbed = _perturbed(pairs, perturbation)
    spec = ModelSpec.check(model, options.max_length)
    reward_model = RewardModel(spec, device=options.device, dtype=options.dtype)
    rewards, truncated = _score_all(reward_model, pairs, perturbed, options.batch_size, progress)
    changes = rewards[2:] - rewards[:2]  # NaN where unchanged
    per_pair = np.nanmean(changes[:, ~np.all(np.isnan(changes), axis=0)], axis=0)
    notes = []
    if truncated:
        notes.append(
            f"{truncated} perturbed inputs were longer than max_length {spec.max_length} tokens and were truncated: "
            "the perturbation may be cut off"
        )
    report = ProbeReport.build(
        perturbation=perturbation,
        rewards=rewards,
        per_pair=per_pair,
        interval=bootstrap_interval(per_pair, resamples=bootstrap, level=level, seed=seed),
        test=sign_flip_pvalue(per_pair, permutations=permutations, seed=seed),
        feature_change=_feature_change(perturbation, pairs, perturbed),
        settings={**spec.settings(options.dtype), "bootstrap": bootstrap, "permutations": permutations,
                  "level": level, "seed": seed, "sample": sample},
        warnings=notes,
    )
    for message in notes:
        warnings.warn(message, stacklevel=2)
    return report
