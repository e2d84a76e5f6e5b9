"""Paired data read by the audit as one row per response: the same report as the table written out by
hand (pair by pair, chosen first, role as the condition), in memory, streamed in chunks of every
file type and through every layout of the reward columns; errors name the source's row and column."""

from __future__ import annotations

import json

import causal_rewards as cr
import numpy as np
import pandas as pd
import pytest
from audit_helpers import assert_same_report
from causal_rewards.cli import main as crm


def pairs(n, seed=0, bias=0.3):
    """A scored file in the layout ``crm score`` writes: longer responses get higher rewards."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, 300, (n, 2))
    reward = rng.normal(size=(n, 2)) + bias * np.log(tokens) + np.array([0.5, 0.0])
    return pd.DataFrame(
        {
            "row": np.arange(n),
            "prompt": [f"question {i}" for i in range(n)],
            "chosen": [" ".join(["yes"] * t) for t in tokens[:, 0]],
            "rejected": [" ".join(["no"] * t) for t in tokens[:, 1]],
            "reward_chosen": reward[:, 0],
            "reward_rejected": reward[:, 1],
            "tokens_chosen": tokens[:, 0],
            "tokens_rejected": tokens[:, 1],
            "subset": rng.choice(["chat", "code"], n),
        }
    )


def by_hand(df, reward=("reward_chosen", "reward_rejected")):
    """One row per response, pair by pair, chosen first."""
    rows = []
    for _, pair in df.iterrows():
        for role, score in zip(("chosen", "rejected"), reward):
            tokens = pair[f"tokens_{role}"]
            rows.append({"reward": pair[score], "tokens": tokens, "role": role, "subset": pair["subset"]})
    return pd.DataFrame(rows)


COMMON = {"by": "tokens", "bins": 4, "permutations": 30}


@pytest.mark.parametrize("kernel,method", [("energy", "scan"), ("rbf", "exact"), ("rbf", "grid")])
def test_paired_data_equal_the_table_written_out(kernel, method):
    df = pairs(300, seed=1)
    report = cr.audit(df, kernel=kernel, method=method, **COMMON)
    expected = cr.audit(by_hand(df), kernel=kernel, method=method, condition="role", **COMMON)
    assert_same_report(report, expected)
    assert report.condition == "role" and report.group_labels == ["role=chosen", "role=rejected"]
    assert report.n == 600


def test_rewardbench_scores_and_other_reward_names():
    df = pairs(200, seed=2)
    bench = df.rename(columns={"reward_chosen": "scores_chosen", "reward_rejected": "scores_rejected"})
    assert_same_report(cr.audit(bench, kernel="energy", **COMMON), cr.audit(df, kernel="energy", **COMMON))
    # Scores stored as one-element lists, as some tools write them.
    listed = bench.assign(
        scores_chosen=[[v] for v in bench.scores_chosen], scores_rejected=[[v] for v in bench.scores_rejected]
    )
    assert_same_report(cr.audit(listed, kernel="energy", **COMMON), cr.audit(df, kernel="energy", **COMMON))
    named = df.rename(columns={"reward_chosen": "logit_chosen", "reward_rejected": "logit_rejected"})
    logit = cr.audit(named, reward="logit", kernel="energy", **COMMON)
    reward = cr.audit(df, kernel="energy", **COMMON)
    assert logit.statistic == reward.statistic
    assert np.array_equal(logit.null_statistics, reward.null_statistics)
    assert logit.verdict() == reward.verdict().replace("reward depends", "logit depends", 1)


def test_the_role_is_the_default_condition_and_can_be_pooled_or_audited():
    df = pairs(300, seed=3)
    pooled = cr.audit(df, kernel="energy", condition=False, **COMMON)
    assert pooled.condition is None
    assert_same_report(pooled, cr.audit(by_hand(df), kernel="energy", **COMMON))
    within_subset = cr.audit(df, kernel="energy", condition="subset", **COMMON)
    assert within_subset.condition == "subset" and within_subset.n == 600
    by_role = cr.audit(df, by="role", binning="categorical", kernel="energy", permutations=50)
    assert by_role.condition is None and by_role.bin_labels == ["role=chosen", "role=rejected"]
    assert by_role.pvalue <= 0.05  # chosen responses were given 0.5 more
    assert cr.audit(df, by="subset", binning="categorical", kernel="energy").condition == "role"


@pytest.mark.parametrize("kind", ["parquet", "csv", "jsonl"])
def test_streamed_paired_files_equal_in_memory(tmp_path, kind):
    df = pairs(240, seed=4)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(df)), 3)):
        path = tmp_path / f"part{i}.{kind}"
        piece = df.iloc[part]
        if kind == "parquet":
            piece.to_parquet(path)
        elif kind == "csv":
            piece.to_csv(path, index=False, float_format="%.17g")
        else:
            piece.to_json(path, orient="records", lines=True, double_precision=15)
        paths.append(str(path))
    # Pooled roles with the exact method: the rows' order matters to its permutations. JSON holds 15
    # digits: compare with what it reads back.
    options = {"kernel": "rbf", "method": "exact", "condition": False, **COMMON}
    if kind == "jsonl":
        df = pd.concat([pd.read_json(p, lines=True) for p in paths], ignore_index=True)
    expected = cr.audit(df, **options)
    for chunk_size in (None, 7):
        assert_same_report(cr.audit(paths, chunk_size=chunk_size, **options), expected)


def test_errors_name_the_row_and_column_of_the_source(tmp_path):
    df = pairs(50, seed=5)
    df.loc[7, "reward_rejected"] = np.nan
    path = tmp_path / "scores.parquet"
    df.to_parquet(path)
    message = r"scores.parquet \(rejected\) row 7: column 'reward_rejected' is nan"
    with pytest.raises(ValueError, match=message):
        cr.audit(str(path), by="tokens", chunk_size=4)
    dropped = cr.audit(str(path), by="tokens", drop_nan=True)
    assert dropped.n == 99 and dropped.dropped == 1
    with pytest.raises(ValueError, match=r"column 'length' not found in the paired data.*length_chosen"):
        cr.audit(df, by="length")
    with pytest.raises(ValueError, match="paired data with a column 'role'"):
        cr.audit(df.assign(role="x"), by="tokens")


def test_cli_reads_a_scored_file(tmp_path, capsys):
    path = tmp_path / "scored.parquet"
    pairs(400, seed=6, bias=0.5).to_parquet(path)
    out = tmp_path / "audit.json"
    args = ["audit", str(path), "--by", "tokens", "--bins", "5", "--kernel", "energy", "--json", str(out)]
    assert crm(args) == 0
    data = json.loads(out.read_text())
    assert data["condition"] == "role" and data["n"] == 800 and data["pvalue"] <= 0.05
    assert capsys.readouterr().out.startswith("verdict: reward depends on tokens given role")
    assert crm([*args, "--no-condition", "--quiet"]) == 0
    assert json.loads(out.read_text())["condition"] is None
