"""Data parallelism: with 2 CPU processes on gloo, the CRM objective sees the global batch, its loss
equals the single-process loss on that batch, and DDP's averaged gradient equals the single-process
gradient; the memory banks of the ranks stay identical to the single-process bank."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from causal_rewards.training import CRMObjective

WORLD = 2
PAIRS_PER_RANK = 6
STEPS = 2
OPTIONS = {"lambda_mmd": 2.0, "conditional": True, "num_bins": 3, "memory_bank_size": 4}


def global_batches():
    """STEPS global batches of WORLD * PAIRS_PER_RANK pairs: features and bins."""
    g = torch.Generator().manual_seed(0)
    n = WORLD * PAIRS_PER_RANK
    return [
        (
            torch.randn(n, 5, generator=g, dtype=torch.float64),
            torch.randn(n, 5, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g),
            torch.randint(0, 3, (n,), generator=g),
        )
        for _ in range(STEPS)
    ]


def make_model():
    torch.manual_seed(1)
    return torch.nn.Linear(5, 1).double()


def shard(tensor, rank):
    return tensor[rank * PAIRS_PER_RANK : (rank + 1) * PAIRS_PER_RANK]


def worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = torch.nn.parallel.DistributedDataParallel(make_model())
        objective = CRMObjective(**OPTIONS)
        records = []
        for x_c, x_r, b_c, b_r in global_batches():
            model.zero_grad()
            r = model(torch.cat([shard(x_c, rank), shard(x_r, rank)]))[:, 0]
            out = objective(r[:PAIRS_PER_RANK], r[PAIRS_PER_RANK:], shard(b_c, rank), shard(b_r, rank))
            out.loss.backward()  # DDP averages the gradients over the ranks
            loss = out.loss.detach().clone()
            dist.all_reduce(loss)
            records.append(
                {
                    "loss": loss / WORLD,
                    "mmd": out.mmd.detach(),
                    "grads": [p.grad.clone() for p in model.parameters()],
                    "bank": [t.clone() for t in objective.bank.contents()],
                }
            )
        torch.save(records, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sorted_bank(bank):
    rewards, bins, groups = bank
    keys = sorted(zip(groups.tolist(), bins.tolist(), rewards.tolist()))
    return torch.tensor(keys, dtype=torch.float64)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    model = make_model()
    objective = CRMObjective(**OPTIONS, distributed=False)
    for step, (x_c, x_r, b_c, b_r) in enumerate(global_batches()):
        model.zero_grad()
        n = x_c.shape[0]
        r = model(torch.cat([x_c, x_r]))[:, 0]
        out = objective(r[:n], r[n:], b_c, b_r)
        out.loss.backward()
        for record in (ranks[0][step], ranks[1][step]):
            torch.testing.assert_close(record["loss"], out.loss.detach(), rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(record["mmd"], out.mmd.detach(), rtol=1e-12, atol=1e-14)
            for got, expected in zip(record["grads"], model.parameters()):
                torch.testing.assert_close(got, expected.grad, rtol=1e-10, atol=1e-13)
            # the global batch enters the bank in rank order, the single process's in pair order
            torch.testing.assert_close(sorted_bank(record["bank"]), sorted_bank(objective.bank.contents()))
        assert out.mmd.item() > 1e-4 and len(objective.bank) > 0
