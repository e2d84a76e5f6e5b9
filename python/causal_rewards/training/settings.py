"""The CRM settings every trainer shares, checked in one place, and what is built from them.

``PlainTrainerConfig`` and the TRL configs (``CausalRewardConfig``, ``CausalDPOConfig``) hold the same
CRM fields; each calls ``CRMSettings.of(config)`` when it is constructed, so that a bad value is
refused before any data is read, with the config's name in the message. The trainers then build
their bins (``spurious_bins``) and their objective (``objective``) from the settings.

    lambda_mmd        weight of the MMD penalty: a finite number >= 0
    conditional       MMD within chosen and within rejected responses (True) or pooled (False)
    num_bins          bins per numeric spurious variable: an integer >= 2, or a list with one per variable
    binning           "quantile", "uniform" or "categorical", or a list with one per variable
    kernel, bandwidth, estimator   of the MMD (``causal_rewards.options.MmdOptions``)
    memory_bank_size  per-(group, bin) queue of past rewards joining the penalty: an integer >= 0
    length_penalty    alpha of the length-penalty baseline: a finite number
    scale_invariant   penalise the MMD of the standardised rewards: a bool
    center_rewards_coefficient   c of reward centring, c * mean((r_w + r_l)^2): None or a finite
                      number >= 0 (TRL's RewardConfig field; configs without it have none); checked
                      here, passed by the trainers to the objective at every step
"""

from __future__ import annotations

from dataclasses import dataclass

from ..binning import KINDS
from ..options import MmdOptions, check_choice, check_integer, check_num_bins, check_number, check_weight
from .objective import CRMObjective
from .spurious import SpuriousBins

FIELDS = (
    "lambda_mmd",
    "conditional",
    "num_bins",
    "binning",
    "kernel",
    "bandwidth",
    "estimator",
    "memory_bank_size",
    "length_penalty",
    "scale_invariant",
)


def _one_or_each(value, check, name: str):
    """A scalar setting, or a list with one per spurious variable, each checked."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} is empty")
        return [check(v) for v in value]
    return check(value)


@dataclass(frozen=True)
class CRMSettings:
    """The validated CRM fields of a trainer's config (see the module docstring)."""

    lambda_mmd: float
    conditional: bool
    num_bins: int | list[int]
    binning: str | list[str]
    options: MmdOptions
    memory_bank_size: int
    length_penalty: float
    scale_invariant: bool = False

    @classmethod
    def of(cls, config, owner: str | None = None) -> CRMSettings:
        """The settings of ``config`` (any object with the CRM fields), or an error naming
        ``owner.field`` (owner: the config's class name by default)."""
        owner = owner or type(config).__name__
        values = {name: getattr(config, name) for name in FIELDS}
        for name in ("conditional", "scale_invariant"):
            if not isinstance(values[name], bool):
                raise TypeError(f"{owner}.{name} must be a bool, got {type(values[name]).__name__}")
        centring = getattr(config, "center_rewards_coefficient", None)  # passed by the trainer at each step
        if centring is not None:
            check_weight(centring, f"{owner}.center_rewards_coefficient")
        num_bins = _one_or_each(values["num_bins"], lambda v: check_num_bins(v, f"{owner}.num_bins"),
                                f"{owner}.num_bins")
        binning = _one_or_each(values["binning"], lambda v: check_choice(f"{owner}.binning", v, KINDS),
                               f"{owner}.binning")
        options = MmdOptions.of(values["kernel"], values["bandwidth"], values["estimator"])
        return cls(
            lambda_mmd=check_weight(values["lambda_mmd"], f"{owner}.lambda_mmd"),
            conditional=values["conditional"],
            num_bins=num_bins,
            binning=binning,
            options=options,
            memory_bank_size=check_integer(values["memory_bank_size"], f"{owner}.memory_bank_size", 0),
            length_penalty=check_number(values["length_penalty"], f"{owner}.length_penalty"),
            scale_invariant=values["scale_invariant"],
        )

    def spurious_bins(self, names=None) -> SpuriousBins:
        """Unfitted bins of the spurious variable(s)."""
        return SpuriousBins(binning=self.binning, num_bins=self.num_bins, names=names)

    def objective(self, num_bins: int, *, distributed: bool) -> CRMObjective:
        """The training objective for ``num_bins`` fitted (crossed) bins."""
        return CRMObjective(
            lambda_mmd=self.lambda_mmd,
            conditional=self.conditional,
            num_bins=num_bins,
            kernel=self.options.kernel,
            bandwidth=self.options.core_bandwidth,
            estimator=self.options.estimator,
            memory_bank_size=self.memory_bank_size,
            length_penalty=self.length_penalty,
            distributed=distributed,
            scale_invariant=self.scale_invariant,
        )
