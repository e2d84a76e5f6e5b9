"""Auditing a reward model itself: scoring preference pairs with a local Hugging Face reward
model (``score``) and text-derived spurious variables (``text_feature``).

Modules: ``features`` (the variables), ``pairs`` (TRL's layouts), ``reward_model`` (loading and
checking a model), ``scoring`` / ``parts`` / ``ray_scoring`` (resumable scoring), ``layout`` (the
scored file's columns).
"""

from .features import FEATURE_NAMES, is_feature, text_feature
from .layout import reward_columns
from .scoring import score

__all__ = ["FEATURE_NAMES", "is_feature", "reward_columns", "score", "text_feature"]
