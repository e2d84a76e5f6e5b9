"""The layout of a scored file (``crm score``, ``causal_rewards.score``): one row per preference pair.

    row              int64    0-based position of the pair in the input (all sources in order)
    prompt           string, or list<struct<role: string, content: string>> for conversational data;
                     absent when the input had no prompt
    chosen, rejected string   the response texts
    reward_chosen,   float64  the reward model's logit for each response
    reward_rejected
    tokens_chosen,   int64    tokens of each response alone by the model's tokenizer (no special
    tokens_rejected           tokens, untruncated: the ``tokens`` feature)
    ...                       the input's other columns, as they were

RewardBench names the reward columns ``scores_chosen`` / ``scores_rejected``; readers accept both
(``reward_columns``). The file's parquet metadata key ``causal_rewards.score`` holds the scoring
settings as JSON (model folder and fingerprint, max_length, dtype, input format).
"""

from __future__ import annotations

ROW = "row"
PROMPT = "prompt"
TEXT_COLUMNS = ("chosen", "rejected")
REWARD_COLUMNS = ("reward_chosen", "reward_rejected")
REWARDBENCH_REWARD_COLUMNS = ("scores_chosen", "scores_rejected")
TOKEN_COLUMNS = ("tokens_chosen", "tokens_rejected")
ROLES = ("chosen", "rejected")
METADATA_KEY = b"causal_rewards.score"


def messages_type():
    """The arrow type of a conversational prompt."""
    import pyarrow as pa

    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

#: Columns a scorer writes: an input's own columns of these names are not carried along.
RESERVED = frozenset((ROW, *REWARD_COLUMNS, *REWARDBENCH_REWARD_COLUMNS, *TOKEN_COLUMNS))


def reward_columns(columns) -> tuple[str, str] | None:
    """The (chosen, rejected) reward columns of a paired table with these column names, or None:
    ``reward_chosen``/``reward_rejected``, else RewardBench's ``scores_chosen``/``scores_rejected``."""
    names = set(columns)
    for pair in (REWARD_COLUMNS, REWARDBENCH_REWARD_COLUMNS):
        if set(pair) <= names:
            return pair
    return None
