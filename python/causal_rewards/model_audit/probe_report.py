"""The probe's report: numbers (attributes and JSON), a terminal table, and a self-contained HTML
page (figures embedded) that leads with a one-line verdict. Files are written whole or not at all.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .._io import atomic_write


def _json_value(value):
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _share(hits: np.ndarray, among: np.ndarray) -> tuple[float, int, int]:
    count = int(among.sum())
    found = int((hits & among).sum())
    return (found / count if count else math.nan), found, count


@dataclass
class ProbeReport:
    """Result of ``causal_rewards.probe`` (definitions in ``causal_rewards.model_audit.probing``).

    Attributes:
        perturbation, description, feature: what was changed; feature_change: the mean change of
            that text feature over the perturbed responses.
        pairs: pairs probed (at least one side changed); responses_changed.
        mean_change, interval: mean per-pair reward change and its bootstrap interval (reward units).
        reward_sd: SD of the unperturbed rewards; mean_change_sd, interval_sd: the same in SDs.
        pvalue (pvalue_exact: all sign vectors enumerated): the sign-flip test of a zero mean change.
        mean_change_chosen, mean_change_rejected: the mean change of each side alone.
        flip_rate, flips, correct_pairs: preferences reversed by perturbing the rejected response.
        accuracy, accuracy_rejected_perturbed, accuracy_chosen_perturbed.
        rewards: (4, n) chosen, rejected, perturbed chosen, perturbed rejected (NaN: unchanged);
        per_pair: the per-pair changes d.
    """

    perturbation: str
    description: str
    feature: str
    feature_change: float
    pairs: int
    responses_changed: int
    mean_change: float
    interval: tuple
    reward_sd: float
    mean_change_sd: float
    interval_sd: tuple
    pvalue: float
    pvalue_exact: bool
    mean_change_chosen: float
    mean_change_rejected: float
    flip_rate: float
    flips: int
    correct_pairs: int
    accuracy: float
    accuracy_rejected_perturbed: float
    accuracy_chosen_perturbed: float
    settings: dict
    rewards: np.ndarray = field(repr=False)
    per_pair: np.ndarray = field(repr=False)
    warnings: list = field(default_factory=list)

    @classmethod
    def build(cls, *, perturbation, rewards, per_pair, interval, test, feature_change, settings, warnings):
        chosen, rejected, chosen_after, rejected_after = rewards
        changed = ~np.isnan(rewards[2:])
        chosen_after = np.where(changed[0], chosen_after, chosen)
        rejected_after = np.where(changed[1], rejected_after, rejected)
        sd = float(np.std(np.concatenate([chosen, rejected]), ddof=1)) if rewards.shape[1] > 0 else math.nan
        if not sd > 0:
            warnings = [*warnings, "the unperturbed rewards do not vary: changes in SD units are undefined"]
            sd = math.nan
        correct = chosen > rejected
        flip_rate, flips, correct_pairs = _share(rejected_after > chosen, correct & changed[1])
        mean = float(per_pair.mean())
        return cls(
            perturbation=perturbation.name,
            description=perturbation.description,
            feature=perturbation.feature,
            feature_change=feature_change,
            pairs=int(per_pair.size),
            responses_changed=int(changed.sum()),
            mean_change=mean,
            interval=tuple(interval),
            reward_sd=sd,
            mean_change_sd=mean / sd,
            interval_sd=(interval[0] / sd, interval[1] / sd),
            pvalue=float(test[0]),
            pvalue_exact=bool(test[1]),
            mean_change_chosen=float(np.mean(chosen_after[changed[0]] - chosen[changed[0]])) if changed[0].any() else math.nan,
            mean_change_rejected=float(np.mean(rejected_after[changed[1]] - rejected[changed[1]])) if changed[1].any() else math.nan,
            flip_rate=flip_rate,
            flips=flips,
            correct_pairs=correct_pairs,
            accuracy=float(np.mean(correct)),
            accuracy_rejected_perturbed=float(np.mean(chosen > rejected_after)),
            accuracy_chosen_perturbed=float(np.mean(chosen_after > rejected)),
            settings=dict(settings),
            rewards=rewards,
            per_pair=per_pair,
            warnings=list(warnings),
        )

    @property
    def level(self) -> float:
        return float(self.settings["level"])

    @property
    def significant(self) -> bool:
        """Whether the sign-flip p-value is below 1 - level."""
        return self.pvalue < 1 - self.level

    def verdict(self) -> str:
        """One line: the effect in reward units and in SDs with their intervals, and the p-value."""
        low, high = self.interval
        low_sd, high_sd = self.interval_sd
        percent = f"{100 * self.level:g}%"
        conclusion = "the reward is sensitive to this perturbation" if self.significant else "no significant change"
        return (
            f"{self.perturbation}: mean reward change {self.mean_change:+.3g} ({percent} CI {low:+.3g} to {high:+.3g}) "
            f"= {self.mean_change_sd:+.3g} SD ({low_sd:+.3g} to {high_sd:+.3g}); sign-flip p = {self.pvalue:.3g}: "
            f"{conclusion}"
        )

    def to_dict(self) -> dict:
        """The JSON fields (NaN -> None)."""
        names = [
            "perturbation", "description", "feature", "feature_change", "pairs", "responses_changed",
            "mean_change", "interval", "reward_sd", "mean_change_sd", "interval_sd", "pvalue", "pvalue_exact",
            "mean_change_chosen", "mean_change_rejected", "flip_rate", "flips", "correct_pairs", "accuracy",
            "accuracy_rejected_perturbed", "accuracy_chosen_perturbed", "settings", "warnings",
        ]
        return _json_value({"verdict": self.verdict(), "significant": self.significant,
                            **{name: getattr(self, name) for name in names}})

    def to_json(self, path=None) -> str:
        """The report as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            atomic_write(path, text + "\n")
        return text

    def _rows(self) -> list[tuple[str, str]]:
        def f(x, digits=4):
            return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"

        s = self.settings
        exact = "exact, all sign vectors" if self.pvalue_exact else f"{s['permutations']} permutations"
        return [
            ("perturbation", f"{self.perturbation}: {self.description}"),
            ("pairs probed (responses changed)", f"{self.pairs} ({self.responses_changed})"),
            (f"mean {self.feature} change", f(self.feature_change)),
            ("mean reward change", f"{f(self.mean_change)}  [{f(self.interval[0])}, {f(self.interval[1])}]"),
            ("in SDs of the rewards", f"{f(self.mean_change_sd)}  [{f(self.interval_sd[0])}, {f(self.interval_sd[1])}]"),
            ("reward SD", f(self.reward_sd)),
            ("sign-flip p-value", f"{f(self.pvalue)} ({exact}, seed {s['seed']})"),
            ("mean change chosen / rejected", f"{f(self.mean_change_chosen)} / {f(self.mean_change_rejected)}"),
            ("preference flips (rejected perturbed)", f"{f(self.flip_rate)} ({self.flips} of {self.correct_pairs})"),
            ("accuracy: as is / rejected perturbed / chosen perturbed",
             f"{f(self.accuracy)} / {f(self.accuracy_rejected_perturbed)} / {f(self.accuracy_chosen_perturbed)}"),
            ("interval", f"{100 * self.level:g}% percentile bootstrap, {s['bootstrap']} resamples"),
            ("model", f"{s['model']} ({s['input']}, max_length {s['max_length']}, {s['dtype']})"),
        ]

    def summary(self) -> str:
        """A plain-text table for the terminal, the verdict first."""
        rows = self._rows()
        width = max(len(k) for k, _ in rows)
        lines = [f"crm probe: {self.verdict()}", ""]
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def figures(self) -> dict[str, str]:
        """Base64 PNGs: the per-pair changes with the mean and its interval; rewards before/after."""
        from matplotlib.figure import Figure

        def encode(fig) -> str:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
            return base64.b64encode(buffer.getvalue()).decode("ascii")

        out = {}
        fig = Figure(figsize=(7, 3.8))
        ax = fig.subplots()
        ax.hist(self.per_pair, bins=min(40, max(5, self.pairs // 4)), color="#8da0cb")
        ax.axvspan(*self.interval, color="#fc8d62", alpha=0.35, label=f"{100 * self.level:g}% interval of the mean")
        ax.axvline(self.mean_change, color="#d95f02", lw=2, label=f"mean {self.mean_change:+.3g}")
        ax.axvline(0, color="black", lw=1, ls="--")
        ax.set_xlabel("reward change per pair (perturbed - original)")
        ax.set_ylabel("pairs")
        ax.set_title(f"{self.perturbation}: reward change")
        ax.legend(fontsize=8)
        out["changes"] = encode(fig)
        fig = Figure(figsize=(5, 5))
        ax = fig.subplots()
        for side, colour in ((0, "#1b9e77"), (1, "#d95f02")):
            keep = ~np.isnan(self.rewards[2 + side])
            ax.scatter(self.rewards[side, keep], self.rewards[2 + side, keep], s=10, color=colour,
                       label=("chosen", "rejected")[side])
        values = self.rewards[~np.isnan(self.rewards)]
        ax.plot([values.min(), values.max()], [values.min(), values.max()], color="black", lw=1, ls="--")
        ax.set_xlabel("reward as is")
        ax.set_ylabel("reward perturbed")
        ax.set_title("each response before and after")
        ax.legend(fontsize=8)
        out["scatter"] = encode(fig)
        return out

    def to_html(self, path=None) -> str:
        """A self-contained HTML page (figures embedded) leading with the verdict; written
        atomically to ``path`` when given."""
        e = html.escape
        figures = self.figures()
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in self._rows())
        warnings = "".join(f"<li>{e(w)}</li>" for w in self.warnings)
        image = '<figure><img alt="{0}" src="data:image/png;base64,{1}"><figcaption>{0}</figcaption></figure>'
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>crm probe: {e(self.perturbation)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{max-width:100%}}
.verdict{{font-size:1.15em;padding:.6em;background:{"#fde0dd" if self.significant else "#e5f5e0"}}}</style>
</head><body>
<p class="verdict"><strong>{e(self.verdict())}</strong></p>
<h1>Counterfactual probe of a reward model</h1>
{image.format("reward change per pair, with the mean and its interval", figures["changes"])}
{image.format("reward of each response before and after the perturbation", figures["scatter"])}
<table>{rows}</table>
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<p>The change of a pair is the mean, over its responses the perturbation changed, of the perturbed
minus the original reward. SD units divide by the standard deviation of the unperturbed rewards.
The p-value is the paired sign-flip permutation test of a zero mean change. A flip is a pair the
model ordered correctly whose perturbed rejected response outscores the chosen one.</p>
</body></html>
"""
        if path is not None:
            atomic_write(path, page)
        return page
