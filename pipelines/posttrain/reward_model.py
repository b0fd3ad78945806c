"""``natal reward``: a reward model that learns which of two answers people prefer.

``LlamaForSequenceClassification`` with one output, initialized from the SFT model (a new
score head on its last hidden state), trained with the Bradley–Terry loss
−log σ(r_chosen − r_rejected − margin) on pairs from every format
:mod:`pipelines.posttrain.preference_data` reads. Writes ``RUNDIR/final`` (the classifier + tokenizer,
which the RLHF reward actor loads) and ``RUNDIR/eval.json`` with the held-out pairwise
``accuracy``.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from cluster.config import NatalConfig, RewardConfig
from pipelines.data import storage
from pipelines.data.stats import StageStats
from pipelines.posttrain import finetune, lora
from pipelines.posttrain.losses import bradley_terry_loss, pairwise_accuracy
from pipelines.posttrain.sft_data import model_inputs
from pipelines.training.loop import WorkerContext
from pipelines.training.metrics import flops_per_token


def load_reward_model(model_dir: str, pad_token_id: int) -> torch.nn.Module:
    """A one-output sequence classifier from a causal LM (or reward model) directory.

    The score is read at each row's last non-pad token, which transformers finds through
    ``pad_token_id``.
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        finetune.local_model_dir(model_dir), num_labels=1, dtype=torch.float32
    )
    model.config.pad_token_id = pad_token_id
    return model


def scores(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) rewards of a :func:`finetune.pair_batch`."""
    rewards = model(**model_inputs(batch)).logits.squeeze(-1).float()
    half = rewards.size(0) // 2
    return rewards[:half], rewards[half:]


class RewardTask(finetune.PairTask):
    name = "reward"

    def __init__(self, model: str, tokenizer, train, val, cfg: RewardConfig):
        super().__init__(model, tokenizer, train, val, cfg)
        self.last_eval: dict[str, float] = {}

    def build_model(self, ctx: WorkerContext) -> torch.nn.Module:
        # with LoRA the new score head trains in full, beside the adapters
        return lora.wrap(load_reward_model(self.model_uri, self.pad_id), self.cfg, "SEQ_CLS")

    def compute_loss(self, model, batch, ctx):
        chosen, rejected = scores(model, batch)
        loss = bradley_terry_loss(chosen, rejected, self.cfg.margin)
        return loss, {
            "tokens": finetune.real_tokens(batch, self.pad_id),
            "accuracy": float(pairwise_accuracy(chosen, rejected)),
            "reward_margin": float((chosen - rejected).detach().mean()),
        }

    def loss_weight(self, batch) -> float:
        return finetune.pair_count(batch)

    def evaluate(self, model, ctx: WorkerContext) -> dict[str, float]:
        if not self.val_pairs:
            return {}
        sums = {"loss": 0.0, "correct": 0.0, "pairs": 0.0, "margin": 0.0}
        chunks = finetune.eval_chunks(
            self.val_pairs, self.cfg.micro_batch, ctx.rank, ctx.world_size, self.cfg.eval_batches
        )
        for chunk in chunks:
            batch = finetune.pair_batch(chunk, self.pad_id)
            chosen, rejected = scores(model, {k: v.to(ctx.device) for k, v in batch.items()})
            n = len(chunk)
            sums["loss"] += float(bradley_terry_loss(chosen, rejected, self.cfg.margin)) * n
            sums["correct"] += float((chosen > rejected).sum())
            sums["margin"] += float((chosen - rejected).sum())
            sums["pairs"] += n
        total = ctx.all_sum(sums)
        pairs = max(total["pairs"], 1.0)
        self.last_eval = {
            "accuracy": total["correct"] / pairs,
            "loss": total["loss"] / pairs,
            "reward_margin": total["margin"] / pairs,
            "pairs": int(total["pairs"]),
        }
        return {
            "val_loss": self.last_eval["loss"],
            "val_accuracy": self.last_eval["accuracy"],
            "val_reward_margin": self.last_eval["reward_margin"],
        }

    def flops_per_token(self, model: torch.nn.Module) -> float:
        return flops_per_token(model, self.cfg.max_seq_len)

    def export(self, model, directory: str, ctx: WorkerContext) -> None:
        adapter = storage.join(ctx.run_dir, "final-adapter")
        lora.export(model, directory, adapter, self.model_uri, self.tokenizer)

    def after_export(self, directory: str, ctx: WorkerContext) -> dict[str, Any]:
        """``RUNDIR/eval.json``: held-out pairwise accuracy of the final model."""
        storage.write_text(
            storage.join(ctx.run_dir, "eval.json"), json.dumps(self.last_eval, indent=2) + "\n"
        )
        return {
            f"val_{k}": self.last_eval[k]
            for k in ("accuracy", "reward_margin")
            if k in self.last_eval
        }


def run(
    cfg: NatalConfig,
    model: str,
    data: list[str],
    output: str,
    fmt: str | None = None,
    split: finetune.PromptSplit | None = None,
) -> dict[str, Any]:
    """Train a reward model from ``model`` on the preference files in ``data`` (or on one
    side of ``split`` of them)."""
    reward_cfg = cfg.reward
    stats = StageStats("reward")
    lora.check_targets(finetune.model_config(model), reward_cfg, "reward", model)
    tokenizer, train, val = finetune.preference_splits(reward_cfg, model, data, fmt, stats, split)
    task = RewardTask(model, tokenizer, train, val, reward_cfg)
    return finetune.train(task, cfg, reward_cfg, output, stats)
