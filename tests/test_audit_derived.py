"""Spurious variables derived from the response texts when a --by name is not a column: the same
report as the variable computed here with ``model_audit.text_feature`` and given as a column, for
paired and one-row-per-response data, streamed or not; the refusals name what is missing."""

from __future__ import annotations

import json

import causal_rewards as cr
import numpy as np
import pandas as pd
import pytest
from audit_helpers import assert_same_report
from causal_rewards.cli import main as crm
from causal_rewards.model_audit import text_feature

OPENERS = ["You're absolutely right! ", "Yes, ", "", "", "Well, "]


def responses(n, seed=0):
    """Texts whose reward grows with their words and with an agreeing opener."""
    rng = np.random.default_rng(seed)
    words = rng.integers(3, 60, n)
    texts = [
        OPENERS[i % len(OPENERS)] + " ".join(["word"] * w) + ("\n- **a point**" if i % 3 == 0 else "")
        for i, w in enumerate(words)
    ]
    reward = rng.normal(size=n) + 0.02 * words + 0.5 * np.array([t.startswith(("You", "Yes")) for t in texts])
    return pd.DataFrame({"completion": texts, "reward": reward})


@pytest.mark.parametrize("name", ["words", "characters", "agree", "markdown", "regex:\\bword\\b"])
def test_a_derived_variable_equals_it_given_as_a_column(name):
    df = responses(400, seed=1)
    options = {"by": name, "bins": 4, "kernel": "energy", "permutations": 20}
    derived = cr.audit(df, **options)
    given = cr.audit(df.assign(**{name: text_feature(name, df.completion.tolist())}), **options)
    assert_same_report(derived, given)


def test_paired_texts_and_an_explicit_text_column(tmp_path):
    rng = np.random.default_rng(2)
    chosen, rejected = responses(300, seed=3), responses(300, seed=4)
    paired = pd.DataFrame(
        {
            "chosen": chosen.completion,
            "rejected": rejected.completion,
            "reward_chosen": chosen.reward + 0.3,
            "reward_rejected": rejected.reward,
            "subset": rng.choice(["a", "b"], 300),
        }
    )
    long = pd.DataFrame(
        {
            "reward": np.ravel(np.column_stack([paired.reward_chosen, paired.reward_rejected])),
            "response": np.ravel(np.column_stack([paired.chosen, paired.rejected])),
            "role": ["chosen", "rejected"] * 300,
        }
    )
    options = {"by": "words", "bins": 4, "kernel": "energy", "permutations": 20}
    expected = cr.audit(long, condition="role", text="response", **options)
    assert_same_report(cr.audit(paired, **options), expected)
    path = tmp_path / "pairs.parquet"
    paired.to_parquet(path)
    assert_same_report(cr.audit(str(path), chunk_size=37, **options), expected)
    binning = {"subset": "categorical"}
    crossed = cr.audit(paired, by=["agree", "subset"], bins=4, binning=binning, kernel="energy")
    assert crossed.num_bins == 4 and crossed.condition == "role"


def test_refusals_name_what_is_missing():
    df = responses(50, seed=5)
    with pytest.raises(ValueError, match="token lengths need the reward model's tokenizer.*tokens_chosen"):
        cr.audit(df, by="tokens")
    with pytest.raises(ValueError, match="invalid regular expression"):
        cr.audit(df, by="regex:(")
    with pytest.raises(ValueError, match="no text column was found.*completion, response, text"):
        cr.audit(df.rename(columns={"completion": "answer"}), by="words")
    with pytest.raises(ValueError, match="text column 'body' not found"):
        cr.audit(df, by="words", text="body")
    with pytest.raises(ValueError, match="column 'nonsense' not found"):
        cr.audit(df, by="nonsense")
    broken = df.astype({"completion": object})
    broken.loc[17, "completion"] = None
    with pytest.raises(ValueError, match="input row 17: column 'completion' is missing"):
        cr.audit(broken, by="words")
    assert cr.audit(broken, by="words", drop_nan=True).dropped == 1
    broken.loc[17, "completion"] = 12
    with pytest.raises(TypeError, match="column 'completion', row 17 must be a str"):
        cr.audit(broken, by="words")


def test_cli_derives_and_lists_the_variables(tmp_path, capsys):
    path = tmp_path / "responses.jsonl"
    responses(300, seed=6).to_json(path, orient="records", lines=True)
    out = tmp_path / "audit.json"
    args = ["audit", str(path), "--by", "agree", "--kernel", "energy", "--permutations", "99"]
    args += ["--json", str(out)]
    assert crm([*args, "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["by"] == ["agree"] and data["num_bins"] == 2 and data["pvalue"] <= 0.05
    with pytest.raises(SystemExit):
        crm(["audit", "--help"])
    help_text = capsys.readouterr().out
    for name in ("words", "characters", "agree", "markdown", "emoji", "regex:PATTERN", "tokens_chosen"):
        assert name in help_text
