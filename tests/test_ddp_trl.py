"""CausalRewardTrainer under Accelerate's multi-process CPU state (2 processes, gloo): each rank's
compute_loss on its half of a global batch averages to the single-process loss on the whole batch,
and the rank-averaged gradient equals the single-process gradient."""

from __future__ import annotations

import os
import socket

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import torch.distributed as dist
import torch.multiprocessing as mp

GLOBAL_PAIRS = 8
WORLD = 2


def build_trainer(output_dir):
    import numpy as np
    from causal_rewards.training import CausalRewardConfig, CausalRewardTrainer
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    words = [
        "the",
        "a",
        "good",
        "bad",
        "answer",
        "question",
        "yes",
        "no",
        "maybe",
        "long",
        "short",
        "very",
        "helpful",
        "wrong",
        "right",
    ]
    rng = np.random.default_rng(0)
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(
        [" ".join(rng.choice(words, size=8)) for _ in range(100)],
        trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    n = 16
    dataset = Dataset.from_dict(
        {
            "chosen": [" ".join(rng.choice(words, size=int(rng.integers(2, 8)))) for _ in range(n)],
            "rejected": [" ".join(rng.choice(words, size=int(rng.integers(2, 8)))) for _ in range(n)],
            "score": rng.normal(size=n).tolist(),
        }
    )
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=64,
            n_embd=16,
            n_layer=2,
            n_head=2,
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    args = CausalRewardConfig(
        output_dir=output_dir,
        spurious_columns="score",
        num_bins=3,
        lambda_mmd=4.0,
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return CausalRewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def collate(trainer, rows):
    keep = ("chosen_ids", "rejected_ids", "crm_bins_chosen", "crm_bins_rejected")
    examples = [{k: trainer.train_dataset[i][k] for k in keep} for i in rows]
    return trainer.data_collator(examples)


def loss_and_grads(trainer, rows):
    trainer.model.zero_grad()
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, collate(trainer, rows))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]


def worker(rank, port, out_dir):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    trainer = build_trainer(os.path.join(out_dir, f"run{rank}"))
    assert dist.is_initialized() and dist.get_world_size() == WORLD
    half = GLOBAL_PAIRS // WORLD
    loss, grads = loss_and_grads(trainer, range(rank * half, (rank + 1) * half))
    dist.all_reduce(loss)
    for g in grads:
        dist.all_reduce(g)  # what DDP does, followed by the division by the world size
    torch.save(
        {"loss": loss / WORLD, "grads": [g / WORLD for g in grads]}, os.path.join(out_dir, f"rank{rank}.pt")
    )
    dist.barrier()
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_reward_trainer_two_processes_equal_one(tmp_path, monkeypatch):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    single = build_trainer(str(tmp_path / "single"))
    loss, grads = loss_and_grads(single, range(GLOBAL_PAIRS))
    mmd = single._metrics["train"]["mmd"][-1]
    assert mmd > 1e-4  # the penalty is active
    for rank in range(WORLD):
        record = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(record["loss"], loss, rtol=1e-5, atol=1e-7)
        for got, expected in zip(record["grads"], grads):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
