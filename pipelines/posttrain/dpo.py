"""``natal dpo``: direct preference optimization, the offline alternative to the RLHF loop.

The policy starts as a copy of ``model``; a frozen copy is the reference (with LoRA, the
policy's own base with its adapters off: one copy in memory). Each pair's
implicit reward is β·(log π(y|x) − log π_ref(y|x)) summed over the response tokens; the loss
pushes the chosen one above the rejected one (:func:`pipelines.posttrain.losses.dpo_loss`). Metrics:
the implicit-reward margin and accuracy, on training batches and held-out pairs. Same data
adapters as the reward model. Writes ``RUNDIR/final`` (model + tokenizer; merged) and, with
LoRA, ``RUNDIR/final-adapter``.
"""

from __future__ import annotations

from typing import Any

import torch

from cluster.config import DPOConfig, NatalConfig
from pipelines.data import storage
from pipelines.data.stats import StageStats
from pipelines.posttrain import finetune, lora
from pipelines.posttrain.losses import dpo_loss, sequence_logprob
from pipelines.posttrain.sft_data import model_inputs
from pipelines.training.loop import WorkerContext
from pipelines.training.metrics import flops_per_token


def load_policy(model_dir: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        finetune.local_model_dir(model_dir), dtype=torch.float32
    )


def pair_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed response log-probs of a :func:`finetune.pair_batch`."""
    logprobs = sequence_logprob(model(**model_inputs(batch)).logits, batch["labels"])
    half = logprobs.size(0) // 2
    return logprobs[:half], logprobs[half:]


def reference_logprobs(reference, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pair_logprobs` under the frozen reference: a model, or a LoRA policy whose
    base (adapters off) is the reference."""
    if not lora.is_lora(reference):
        with torch.no_grad():
            return pair_logprobs(reference, batch)
    training = reference.training
    reference.eval()  # no dropout in the reference, as in the frozen copy
    try:
        with torch.no_grad(), lora.adapters_off(reference):
            return pair_logprobs(reference, batch)
    finally:
        reference.train(training)


def dpo_metrics(policy, reference, batch, cfg: DPOConfig) -> dict[str, torch.Tensor]:
    """DPO loss, rewards, margin and accuracy of one pair batch."""
    policy_chosen, policy_rejected = pair_logprobs(policy, batch)
    reference_chosen, reference_rejected = reference_logprobs(reference, batch)
    return dpo_loss(
        policy_chosen,
        policy_rejected,
        reference_chosen,
        reference_rejected,
        beta=cfg.beta,
        label_smoothing=cfg.label_smoothing,
    )


class DPOTask(finetune.PairTask):
    name = "dpo"

    def __init__(self, model: str, tokenizer, train, val, cfg: DPOConfig):
        super().__init__(model, tokenizer, train, val, cfg)
        self.reference: torch.nn.Module | None = None

    def build_model(self, ctx: WorkerContext) -> torch.nn.Module:
        if self.cfg.lora_r:  # the policy's own base is the reference: no second copy
            self.reference = lora.wrap(load_policy(self.model_uri), self.cfg)
            return self.reference
        self.reference = load_policy(self.model_uri).to(ctx.device).eval().requires_grad_(False)
        return load_policy(self.model_uri)

    def compute_loss(self, model, batch, ctx):
        out = dpo_metrics(model, self.reference, batch, self.cfg)
        metrics = {
            k: float(out[k]) for k in ("margin", "accuracy", "chosen_reward", "rejected_reward")
        }
        return out["loss"], {"tokens": finetune.real_tokens(batch, self.pad_id), **metrics}

    def loss_weight(self, batch) -> float:
        return finetune.pair_count(batch)

    def evaluate(self, model, ctx: WorkerContext) -> dict[str, float]:
        """Held-out pairs and a fixed sample of training pairs: loss, margin, accuracy."""
        out: dict[str, float] = {}
        for split, pairs in (("val", self.val_pairs), ("train", self.train_pairs)):
            sums = {"loss": 0.0, "margin": 0.0, "accuracy": 0.0, "pairs": 0.0}
            chunks = finetune.eval_chunks(
                pairs, self.cfg.micro_batch, ctx.rank, ctx.world_size, self.cfg.eval_batches
            )
            for chunk in chunks:
                batch = {
                    k: v.to(ctx.device) for k, v in finetune.pair_batch(chunk, self.pad_id).items()
                }
                metrics = dpo_metrics(model, self.reference, batch, self.cfg)
                for key in ("loss", "margin", "accuracy"):
                    sums[key] += float(metrics[key]) * len(chunk)
                sums["pairs"] += len(chunk)
            total = ctx.all_sum(sums)
            if total["pairs"]:
                for key in ("loss", "margin", "accuracy"):
                    out[f"{split}_{key}"] = total[key] / total["pairs"]
        return out

    def flops_per_token(self, model: torch.nn.Module) -> float:
        # the policy's forward and backward, plus the reference's forward (a third of it)
        return flops_per_token(model, self.cfg.max_seq_len) * 4 / 3

    def export(self, model, directory: str, ctx: WorkerContext) -> None:
        adapter = storage.join(ctx.run_dir, "final-adapter")
        lora.export(model, directory, adapter, self.model_uri, self.tokenizer)


def run(
    cfg: NatalConfig, model: str, data: list[str], output: str, fmt: str | None = None
) -> dict[str, Any]:
    """DPO-tune ``model`` on the preference files in ``data``; the final model is RUNDIR/final."""
    dpo_cfg = cfg.dpo
    stats = StageStats("dpo")
    lora.check_targets(finetune.require_causal_lm(model), dpo_cfg, "dpo", model)
    tokenizer, train, val = finetune.preference_splits(dpo_cfg, model, data, fmt, stats)
    task = DPOTask(model, tokenizer, train, val, dpo_cfg)
    return finetune.train(task, cfg, dpo_cfg, output, stats, after=lambda s: last_eval(output))


def last_eval(output: str) -> dict[str, float]:
    """The margins and accuracies of the final evaluation (from metrics.jsonl)."""
    from pipelines.training.metrics import read

    evaluated = [row for row in read(output) if "train_margin" in row or "val_margin" in row]
    if not evaluated:
        return {}
    keys = ("train_margin", "train_accuracy", "val_margin", "val_accuracy")
    return {k: evaluated[-1][k] for k in keys if k in evaluated[-1]}
