"""The Ray engine of ``score``: ``ray.data`` ``map_batches`` with an actor pool, one reward model
loaded per actor (one GPU each when the cluster has GPUs and the device is not "cpu").

The driver reads and checks the pairs, keeps what earlier runs scored, and sends the rest to the
cluster as one dataset (so each actor loads its model once); results come back in row order
(``preserve_order``) and each chunk is written as soon as all its rows are back, as with the local
engine. The driver holds the pairs to be scored in memory. Actors return the user's errors instead
of raising them (Ray would wrap them in its own types); the driver raises the first.
"""

from __future__ import annotations

import json
import pickle

import numpy as np

from .reward_model import ModelSpec, RewardModel

RAY_BATCH_PAIRS = 64


#: Errors of the input or the model that an actor returns instead of raising (Ray would wrap them).
USER_ERRORS = (ValueError, TypeError, OSError)


class ScoreActor:
    """A Ray actor: one loaded reward model scoring batches of pairs. A user error (a model that
    does not load, say) is returned pickled in the ``error`` column, for the driver to raise."""

    def __init__(self, folder: str, max_length: int, device: str, dtype: str, batch_size: int):
        self.error = None
        try:
            self.model = RewardModel(ModelSpec.check(folder, max_length), device=device, dtype=dtype)
        except USER_ERRORS as error:
            self.error = error
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        rows = np.asarray(batch["row"])
        errors = np.full(len(rows), b"", dtype=object)
        try:
            if self.error is not None:
                raise self.error
            prompts = [json.loads(p) for p in batch["prompt"]]
            rc, rr, tc, tr = self.model.score_pairs(
                None if prompts[0] is None else prompts, [str(c) for c in batch["chosen"]],
                [str(r) for r in batch["rejected"]], batch_size=self.batch_size,
            )
        except USER_ERRORS as error:
            errors[0] = pickle.dumps(error)
            rc = rr = np.full(len(rows), np.nan)
            tc = tr = np.zeros(len(rows), dtype=bool)
        return {"row": rows, "reward_chosen": rc, "reward_rejected": rr,
                "truncated": tc.astype(np.int64) + tr.astype(np.int64), "error": errors}


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
        chunks = list(chunks)
        remaining = [len(chunk.missing()) for chunk in chunks]
        size = self.options.chunk_size
        done = 0
        todo = _todo(chunks)
        for batch in self._scored(todo) if todo else ():
            for error in batch["error"]:
                if error:
                    raise pickle.loads(error)
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
        for chunk in chunks[done:]:
            bar.update(2 * chunk.kept)
            yield chunk
