"""Which columns an audit reads from its source, and how it makes its own from them: paired data as
one row per response (``paired``), and spurious variables derived from the response texts when a
``by`` name is not a column.

Derived variables: a ``by`` name that the source does not hold (nor, for paired data, as
``{name}_chosen`` / ``{name}_rejected``) and that names a feature of
``causal_rewards.model_audit.features`` is computed from each response's text with that one
definition (words, characters, agree, markdown, markdown_lists, markdown_bold, markdown_headers,
emoji, regex:PATTERN; see ``DERIVED_HELP``). Token lengths need the reward model's tokenizer: they are
the ``tokens_chosen`` / ``tokens_rejected`` columns ``crm score`` writes, read as ``tokens``. The texts
are, for paired data, the ``chosen`` and ``rejected`` columns; otherwise the column given as ``text``
(default: the first of ``completion``, ``response``, ``text`` that the source has). A missing text is
an error naming its row (or a dropped row with ``drop_nan``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..model_audit.features import FEATURE_HELP, compile_regex, is_feature, text_feature
from ..model_audit.layout import TEXT_COLUMNS
from .files import Chunk
from .paired import ROLE, TEXT, pairing_for
from .rows import missing

#: Where the texts of one-row-per-response data are looked for, in order, when ``text`` is not given.
TEXT_CANDIDATES = ("completion", "response", "text")
#: The derived variables, for ``crm audit --help``.
DERIVED_HELP = "\n".join(line for line in FEATURE_HELP.splitlines() if not line.lstrip().startswith("tokens"))


@dataclass(frozen=True)
class Derived:
    """The ``by`` variables computed from texts, and the chunk column that holds the texts."""

    features: tuple[str, ...]
    text: str

    def add_to(self, chunk: Chunk) -> Chunk:
        """The chunk with each feature's column (NaN where the text is missing, for ``rows`` to refuse
        or drop); errors name the row and the source's text column."""
        texts = chunk.columns[self.text]
        absent = missing(texts)
        present = np.flatnonzero(~absent)
        source = chunk.source_name(self.text)
        columns, names = dict(chunk.columns), dict(chunk.names or {})
        for name in self.features:
            try:
                values = text_feature(name, texts[present].tolist())
            except (TypeError, ValueError) as error:
                where = _where(error, present, chunk)
                raise type(error)(f"{chunk.origin}: column {source!r}, {where}") from None
            if absent.any():
                column = np.full(len(texts), np.nan)
                column[present] = values
                values = column
            columns[name], names[name] = values, source
        return Chunk(columns, chunk.origin, chunk.offset, names)


def _where(error: Exception, present: np.ndarray, chunk: Chunk) -> str:
    """The feature's message with the text's index replaced by its row (``texts[i]`` -> row)."""
    text = str(error)
    head, _, rest = text.partition("[")
    index, _, tail = rest.partition("]")
    if head == "texts" and index.isdigit():
        return f"row {chunk.offset + int(present[int(index)])}{tail}"
    return text


def _derived(spec, names: list[str], paired: bool, origin: str) -> Derived | None:
    """The derived variables of ``spec`` for a source with these columns (validated), or None."""
    per_response = {n.removesuffix("_chosen") for n in names if n.endswith("_chosen")} if paired else set()
    features = tuple(b for b in spec.by if b not in names and b not in per_response and is_feature(b))
    if not features:
        return None
    for name in features:
        if name == "tokens":
            raise ValueError(
                f"{origin}: by 'tokens' is not a column: token lengths need the reward model's tokenizer; "
                "crm score writes them as tokens_chosen and tokens_rejected (crm audit reads them as tokens)"
            )
        if name.startswith("regex:"):
            compile_regex(name.removeprefix("regex:"), f"by {name!r}")
    if paired:
        if not set(TEXT_COLUMNS) <= set(names):
            message = f"by {features[0]!r} needs the texts: paired data without chosen and rejected"
            raise ValueError(f"{origin}: {message}")
        return Derived(features, TEXT)
    if spec.text is not None:
        if spec.text not in names:
            raise ValueError(f"{origin}: text column {spec.text!r} not found (columns: {names[:20]})")
        return Derived(features, spec.text)
    text = next((c for c in TEXT_CANDIDATES if c in names), None)
    if text is None:
        raise ValueError(
            f"{origin}: by {features[0]!r} is not a column and is derived from the texts, but no text column "
            f"was found (looked for {', '.join(TEXT_CANDIDATES)}; give one with text= / --text)"
        )
    return Derived(features, text)


def resolve(spec, available, origin: str):
    """``spec`` for a source with these column names: its pairing (paired data), its derived
    variables, and for paired data without a condition given the role as its condition (unless
    ``spec.role_condition`` is False)."""
    names = [str(a) for a in available]
    probe = pairing_for(names, spec.reward, [], origin)
    derived = _derived(spec, names, probe is not None, origin)
    if probe is None:
        return replace(spec, derived=derived)
    condition = spec.condition
    if condition is None and spec.role_condition and ROLE not in spec.by:
        condition = ROLE
    features = derived.features if derived else ()
    needed = [b for b in spec.by if b not in features] + ([condition] if condition else [])
    needed += [TEXT] if derived else []
    pairing = pairing_for(names, spec.reward, needed, origin)
    return replace(spec, condition=condition, pairing=pairing, derived=derived)
