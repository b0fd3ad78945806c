"""``natal eval``: how good is the run's model, in numbers a person can compare.

- held-out perplexity of the pre-trained model on the validation token shards;
- the reward model's held-out pairwise accuracy (from ``natal reward``'s ``eval.json``);
- reward and win rate of the final policy against the SFT model on the prompts ``natal rlhf``
  held out (never trained on), with a bootstrap 95% interval, by each judge: the reward model
  the policy trained against (labelled: it is not independent) and the independent ones, a
  reward model of preference prompts the training one never saw and/or a rule.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cluster.config import NatalConfig
from cluster.config.errors import InputError
from pipelines.posttrain.sft import greedy_answers
from pipelines.rl.prompts import HELDOUT, read_prompts


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


def outcomes(scores: list[float], baseline: list[float]) -> list[float]:
    """Per prompt: 1 where ``scores`` beat ``baseline``, 0.5 for a tie, 0 for a loss; a prompt
    either side could not be scored on (NaN) is left out."""
    return [
        1.0 if a > b else 0.5 if a == b else 0.0
        for a, b in zip(scores, baseline, strict=True)
        if not (math.isnan(a) or math.isnan(b))
    ]


def win_rate(scores: list[float], baseline: list[float]) -> float:
    """Share of prompts where ``scores`` beat ``baseline`` (a tie counts half)."""
    results = outcomes(scores, baseline)
    return float(np.mean(results)) if results else math.nan


def bootstrap_interval(
    results: list[float], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``results`` (prompts resampled)."""
    if not results:
        return math.nan, math.nan
    values = np.asarray(results, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))
    means = values[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Judge:
    """Who scores eval's answers, and whether the policy was trained against it."""

    name: str  # its key in eval.json
    label: str  # what the report calls it
    independent: bool
    reward_model: str | None = None
    reward_fns: tuple[str, ...] = ()

    def scorer(self) -> Any:
        from actors.scorer import RewardScorer

        return RewardScorer(reward_model=self.reward_model, reward_fns=list(self.reward_fns))


def compare_policies(
    policy: str,
    baseline: str,
    judges: list[Judge],
    prompts_file: str,
    limit: int,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Greedy answers of two models to the prompts, scored by each judge."""
    rows = read_prompts(prompts_file)[:limit]
    conversations = [row["messages"] for row in rows]
    answers = {
        name: greedy_answers(path, conversations, max_new_tokens)
        for name, path in (("policy", policy), ("baseline", baseline))
    }
    verdicts, scores = {}, {}
    for judge in judges:
        scorer = judge.scorer()
        scores[judge.name] = {
            name: scorer.score(rows, texts)["scores"] for name, texts in answers.items()
        }
        results = outcomes(scores[judge.name]["policy"], scores[judge.name]["baseline"])
        verdicts[judge.name] = {
            "label": judge.label,
            "independent": judge.independent,
            "scored": len(results),
            "reward_policy": float(np.nanmean(scores[judge.name]["policy"])),
            "reward_baseline": float(np.nanmean(scores[judge.name]["baseline"])),
            "win_rate": float(np.mean(results)) if results else math.nan,
            "win_rate_ci95": list(bootstrap_interval(results)),
        }
    return {
        "prompts": len(rows),
        "judges": verdicts,
        "examples": [
            {
                "prompt": row["prompt"],
                "baseline": answers["baseline"][i],
                "policy": answers["policy"][i],
                "scores": {
                    name: {side: by[side][i] for side in ("baseline", "policy")}
                    for name, by in scores.items()
                },
            }
            for i, row in enumerate(rows)
        ],
    }


def heldout_prompts(root: Path) -> str:
    """The prompts ``natal rlhf`` set aside in a run directory; an error when there are none."""
    path = Path(root) / "rlhf" / HELDOUT
    if not path.exists() or not path.read_text().strip():
        raise InputError(
            f"{path}: the run held out no prompts (rlhf.heldout_fraction=0): pass --prompts "
            "FILE with prompts the policy was not trained on"
        )
    return str(path)


def lifecycle_judges(cfg: NatalConfig, root: Path) -> list[Judge]:
    """The reward RLHF trained against, then the independent judges the run has."""
    training_model = cfg.rlhf.reward_model
    if training_model is None and not cfg.rlhf.reward_fns:  # as the rlhf stage chose
        training_model = str(root / "reward" / "final")
    judges = [
        Judge(
            "training_reward",
            "the reward RLHF trained against (not independent)",
            False,
            training_model,
            tuple(cfg.rlhf.reward_fns),
        )
    ]
    if (root / "judge" / "final" / "config.json").exists():
        judges.append(
            Judge(
                "judge_model",
                "judge model: a reward model of preference prompts the training one never saw",
                True,
                str(root / "judge" / "final"),
            )
        )
    if cfg.lifecycle.judge_fn:
        spec = cfg.lifecycle.judge_fn
        judges.append(Judge("judge_rule", f"judge rule {spec}", True, None, (spec,)))
    return judges


def run_lifecycle_eval(cfg: NatalConfig, root: Path, prompts_file: str) -> dict[str, Any]:
    """Evaluate a ``natal run`` directory; writes ``RUNDIR/eval/eval.json``."""
    root = Path(root)
    result: dict[str, Any] = {"stage": "eval"}
    result["pretrain"] = perplexity(str(root / "pretrain" / "final"), str(root / "tokenize"))
    reward_eval = root / "reward" / "eval.json"
    if reward_eval.exists():
        result["reward_model_accuracy"] = json.loads(reward_eval.read_text()).get("accuracy")
    result["prompts_file"] = prompts_file
    result["rlhf_vs_sft"] = compare_policies(
        policy=str(root / "rlhf" / "final"),
        baseline=str(root / "sft" / "final"),
        judges=lifecycle_judges(cfg, root),
        prompts_file=prompts_file,
        limit=cfg.lifecycle.eval_prompts,
        max_new_tokens=cfg.lifecycle.eval_max_new_tokens,
    )
    out = root / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    comparison = result["rlhf_vs_sft"]
    result["counts"] = {"prompts": comparison["prompts"]}
    result["judges"] = [  # for the headline: every judge's win rate and interval, in order
        {
            "name": name,
            "independent": verdict["independent"],
            "win_rate": round(verdict["win_rate"], 4),
            "win_rate_ci95": "{:.2f}–{:.2f}".format(*verdict["win_rate_ci95"]),
        }
        for name, verdict in comparison["judges"].items()
    ]
    result["breakdown"] = {  # the same, as rows of natal eval's summary table
        "RLHF win rate vs SFT (95% CI)": {
            j["name"] + ("" if j["independent"] else " (not independent)"): (
                f"{j['win_rate']:.2f} ({j['win_rate_ci95']})"
            )
            for j in result["judges"]
        }
    }
    result["val_ppl"] = round(result["pretrain"]["val_ppl"], 2)
    if comparison["examples"]:  # one answer before/after, shown in the stage's summary
        example = comparison["examples"][0]
        result.update(
            example_prompt=example["prompt"],
            answer_before_rlhf=example["baseline"],
            answer_after_rlhf=example["policy"],
        )
    return {k: v for k, v in result.items() if k not in ("rlhf_vs_sft", "pretrain")}
