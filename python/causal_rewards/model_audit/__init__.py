"""Auditing a reward model itself: text-derived spurious variables (``text_feature``)."""

from .features import FEATURE_NAMES, is_feature, text_feature

__all__ = ["FEATURE_NAMES", "is_feature", "text_feature"]
