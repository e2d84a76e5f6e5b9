"""The Ray engine of ``score``: ``ray.data`` ``map_batches`` with an actor pool, one reward model
loaded per actor (one GPU each when the cluster has GPUs and the device is not "cpu").

The driver reads and checks the pairs, keeps what earlier runs scored, and sends the rest to the
cluster as one dataset (so each actor loads its model once); results come back in row order
(``preserve_order``) and each chunk is written as soon as all its rows are back, as with the local
engine. The driver holds the pairs to be scored in memory.
"""

from __future__ import annotations

import json

import numpy as np

from .reward_model import ModelSpec, RewardModel

RAY_BATCH_PAIRS = 64


class ScoreActor:
    """A Ray actor: one loaded reward model scoring batches of pairs."""

    def __init__(self, folder: str, max_length: int, device: str, dtype: str, batch_size: int):
        self.model = RewardModel(ModelSpec.check(folder, max_length), device=device, dtype=dtype)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        prompts = [json.loads(p) for p in batch["prompt"]]
        rc, rr, tc, tr = self.model.score_pairs(
            None if prompts[0] is None else prompts, [str(c) for c in batch["chosen"]],
            [str(r) for r in batch["rejected"]], batch_size=self.batch_size,
        )
        return {"row": np.asarray(batch["row"]), "reward_chosen": rc, "reward_rejected": rr,
                "truncated": tc.astype(np.int64) + tr.astype(np.int64)}


def _todo(chunks) -> list[dict]:
    return [
        {"row": chunk.first + int(i), "prompt": json.dumps(chunk.pairs[i].prompt), "chosen": chunk.pairs[i].chosen,
         "rejected": chunk.pairs[i].rejected}
        for chunk in chunks for i in chunk.missing()
    ]


class RayEngine:
    def __init__(self, spec: ModelSpec, options):
        self.spec, self.options = spec, options

    def _scored(self, todo: list[dict]):
        try:
            import ray
            import ray.data
        except ModuleNotFoundError:
            raise ValueError('the Ray engine needs Ray: pip install "ray[data]"') from None
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        gpus = 0 if self.options.device == "cpu" else int(ray.cluster_resources().get("GPU", 0))
        workers = self.options.workers or max(gpus, 1)
        batch = max(RAY_BATCH_PAIRS, self.options.batch_size)
        dataset = ray.data.from_items(todo, override_num_blocks=max(1, -(-len(todo) // batch)))
        return dataset.map_batches(
            ScoreActor,
            fn_constructor_kwargs={
                "folder": str(self.spec.folder), "max_length": self.spec.max_length, "device": self.options.device,
                "dtype": self.options.dtype, "batch_size": self.options.batch_size,
            },
            batch_size=batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=1 if gpus else 0,
        ).iter_batches(batch_size=None, batch_format="numpy")

    def run(self, chunks, bar):
        from ..audit.ray_engine import _unwrap

        chunks = list(chunks)
        remaining = [len(chunk.missing()) for chunk in chunks]
        size = self.options.chunk_size
        done = 0
        todo = _todo(chunks)
        try:
            for batch in self._scored(todo) if todo else ():
                for row, rc, rr, truncated in zip(batch["row"], batch["reward_chosen"], batch["reward_rejected"],
                                                  batch["truncated"]):
                    chunk = chunks[int(row) // size]
                    chunk.rewards[:, int(row) - chunk.first] = rc, rr
                    chunk.truncated += int(truncated)
                    remaining[chunk.index] -= 1
                bar.update(2 * len(batch["row"]))
                while done < len(chunks) and remaining[done] == 0:
                    bar.update(2 * chunks[done].kept)
                    yield chunks[done]
                    done += 1
        except Exception as error:  # Ray wraps the actors' errors; re-raise the user's
            unwrapped = _unwrap(error)
            if unwrapped is None:
                raise
            raise type(unwrapped)(str(unwrapped)) from None
        for chunk in chunks[done:]:
            bar.update(2 * chunk.kept)
            yield chunk
