"""Auditing a reward model itself: scoring preference pairs with a local Hugging Face reward
model (``score``), text-derived spurious variables (``text_feature``), and counterfactual probes
that perturb only a spurious variable and measure how the reward moves (``probe``).

Modules: ``features`` (the variables), ``pairs`` (TRL's layouts), ``reward_model`` (loading and
checking a model), ``scoring`` / ``parts`` / ``ray_scoring`` (resumable scoring), ``layout`` (the
scored file's columns), ``perturb`` (the perturbations), ``stats`` (bootstrap interval, sign-flip
test), ``probing`` / ``probe_report`` (the probe and its report).
"""

from .features import FEATURE_NAMES, is_feature, text_feature
from .layout import reward_columns
from .scoring import score

__all__ = ["FEATURE_NAMES", "is_feature", "probe", "reward_columns", "score", "text_feature"]


def __getattr__(name):
    if name in ("probe", "ProbeReport"):
        from . import probing as module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
