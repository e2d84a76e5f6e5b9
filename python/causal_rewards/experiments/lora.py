"""Fine-tuning the encoder with LoRA (peft) instead of a head on frozen embeddings.

The reward model is the same as the default one, MLP([p, r, p * r]) on mean-pooled embeddings of
the prompt and the response, but the embeddings come from all-MiniLM-L6-v2 with trainable low-rank
adapters on the attention projections (W + B A, rank ``r``, scaled by ``alpha / r``), trained
end to end with the same ``PlainRewardTrainer`` objective. Slow on two CPU cores (every step runs the
encoder forward and backward); meant for a GPU or for those with time (``crm demo --lora``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import BiasTask
from .embedding import EMBEDDING_DIM, default_model_path, mean_pool, transformers_progress


@dataclass
class LoraConfig:
    """rank, alpha, dropout and target modules of the adapters; max_length of the token sequences;
    model_path of the encoder (default: the packaged all-MiniLM-L6-v2); device of the model."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("query", "value")
    max_length: int = 96
    model_path: str | None = None
    device: str | None = None  # default: "cuda" when available, else "cpu"

    def __post_init__(self):
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1 or self.max_length < 8:
            raise ValueError(f"bad LoraConfig: rank >= 1, alpha > 0, 0 <= dropout < 1, max_length >= 8; got {self}")


def _tokenizer(config: LoraConfig):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(config.model_path or default_model_path(), local_files_only=True)


class TokenInputs:
    """Token ids of a task's texts, padded to one length so that the trainer can stack any rows."""

    def __init__(self, task: BiasTask, config: LoraConfig):
        self.config = config
        self.tokenizer = _tokenizer(config)
        prompts, responses = task.texts()
        lengths = self.tokenizer(sorted(set(prompts) | set(responses)), truncation=True,
                                 max_length=config.max_length)["input_ids"]
        self.length = max(len(ids) for ids in lengths)

    def _tokens(self, texts: list[str]):
        return self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.length,
                              return_tensors="pt")

    def inputs(self, prompts: list[str], responses: list[str]) -> dict:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        p, r = self._tokens(prompts), self._tokens(responses)
        return {"prompt_ids": p["input_ids"], "prompt_mask": p["attention_mask"],
                "response_ids": r["input_ids"], "response_mask": r["attention_mask"]}


class LoraRewardModel(torch.nn.Module):
    """all-MiniLM-L6-v2 with LoRA adapters (the base weights frozen) and the MLP head."""

    def __init__(self, config: LoraConfig | None = None, *, hidden: int = 64, progress: bool = False):
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model
        from transformers import AutoModel

        super().__init__()
        config = config or LoraConfig()
        with transformers_progress(progress):
            base = AutoModel.from_pretrained(config.model_path or default_model_path(), local_files_only=True)
        adapters = PeftLoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                  target_modules=list(config.target_modules))
        self.encoder = get_peft_model(base, adapters)
        self.head = torch.nn.Sequential(torch.nn.Linear(3 * EMBEDDING_DIM, hidden), torch.nn.ReLU(),
                                        torch.nn.Linear(hidden, 1))
        self.to(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def embed(self, ids, mask):
        return mean_pool(self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask)

    def forward(self, prompt_ids, prompt_mask, response_ids, response_mask):
        p, r = self.embed(prompt_ids, prompt_mask), self.embed(response_ids, response_mask)
        return self.head(torch.cat([p, r, p * r], dim=-1)).squeeze(-1)
