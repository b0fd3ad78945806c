"""``natal eval``: how good is the run's model, in numbers a person can compare.

- held-out perplexity of the pre-trained model on the validation token shards;
- the reward model's held-out pairwise accuracy (from ``natal reward``'s ``eval.json``);
- reward and win rate of the final policy against the SFT model on held-out prompts, judged
  by the reward model (ties count half), with their answers side by side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cluster.config import NatalConfig
from cluster.config.errors import InputError
from pipelines.posttrain.sft import greedy_answers
from pipelines.rl.prompts import read_prompts


def perplexity(model_dir: str, shard_dir: str, max_sequences: int = 32) -> dict[str, float]:
    """Mean next-token loss and perplexity on the first validation sequences."""
    from transformers import AutoModelForCausalLM

    from pipelines.pretrain.token_shards import ShardReader, read_index

    reader = ShardReader(shard_dir, read_index(shard_dir), "val")
    count = min(reader.sequences, max_sequences)
    if count == 0:
        raise InputError(f"{shard_dir}: no validation sequences")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    losses = []
    with torch.no_grad():
        for lo in range(0, count, 8):
            batch = torch.from_numpy(reader.batch(list(range(lo, min(lo + 8, count)))))
            losses.append(model(input_ids=batch, labels=batch).loss.item())
    loss = float(np.mean(losses))
    return {"val_loss": loss, "val_ppl": math.exp(loss), "val_sequences": count}


def win_rate(scores: list[float], baseline: list[float]) -> float:
    """Share of prompts where ``scores`` beat ``baseline`` (a tie counts half)."""
    pairs = list(zip(scores, baseline, strict=True))
    if not pairs:
        return math.nan
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def compare_policies(
    policy: str,
    baseline: str,
    reward_model: str,
    prompts_file: str,
    limit: int,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Answers of two models on held-out prompts, scored by the reward model."""
    from actors.scorer import RewardScorer

    prompts = [row["prompt"] for row in read_prompts(prompts_file)[:limit]]
    scorer = RewardScorer(reward_model=reward_model)
    answers = {
        name: greedy_answers(path, prompts, max_new_tokens)
        for name, path in (("policy", policy), ("baseline", baseline))
    }
    scores = {name: scorer.score(prompts, texts)["scores"] for name, texts in answers.items()}
    return {
        "prompts": len(prompts),
        "reward_policy": float(np.nanmean(scores["policy"])),
        "reward_baseline": float(np.nanmean(scores["baseline"])),
        "win_rate": win_rate(scores["policy"], scores["baseline"]),
        "examples": [
            {
                "prompt": p,
                "baseline": answers["baseline"][i],
                "policy": answers["policy"][i],
                "reward_baseline": scores["baseline"][i],
                "reward_policy": scores["policy"][i],
            }
            for i, p in enumerate(prompts)
        ],
    }


def run_lifecycle_eval(cfg: NatalConfig, root: Path, prompts_file: str) -> dict[str, Any]:
    """Evaluate a ``natal run`` directory; writes ``RUNDIR/eval/eval.json``."""
    root = Path(root)
    result: dict[str, Any] = {"stage": "eval"}
    result["pretrain"] = perplexity(str(root / "pretrain" / "final"), str(root / "tokenize"))
    reward_eval = root / "reward" / "eval.json"
    if reward_eval.exists():
        result["reward_model_accuracy"] = json.loads(reward_eval.read_text()).get("accuracy")
    result["rlhf_vs_sft"] = compare_policies(
        policy=str(root / "rlhf" / "final"),
        baseline=str(root / "sft" / "final"),
        reward_model=str(root / "reward" / "final"),
        prompts_file=prompts_file,
        limit=cfg.lifecycle.eval_prompts,
        max_new_tokens=cfg.lifecycle.eval_max_new_tokens,
    )
    out = root / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    comparison = result["rlhf_vs_sft"]
    result["counts"] = {"prompts": comparison["prompts"]}
    for key in ("reward_policy", "reward_baseline", "win_rate"):
        result[key] = round(comparison[key], 4)
    result["val_ppl"] = round(result["pretrain"]["val_ppl"], 2)
    if comparison["examples"]:  # one answer before/after, shown in the stage's summary
        example = comparison["examples"][0]
        result.update(
            example_prompt=example["prompt"],
            answer_before_rlhf=example["baseline"],
            answer_after_rlhf=example["policy"],
        )
    return {k: v for k, v in result.items() if k not in ("rlhf_vs_sft", "pretrain")}
