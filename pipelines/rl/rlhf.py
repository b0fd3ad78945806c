"""``natal rlhf``: the loop of rollout actors (vLLM), a reward actor and learner actors.

Each step: draw prompts → the rollout pool samples ``group_size`` answers per prompt with their
log-probs → the reward actor scores them → advantages (GRPO: group-normalized, RLOO:
leave-one-out, PPO: GAE on the learners) → the learners update the policy data-parallel →
rank 0's weights go to every rollout engine through one ``ray.put``. Async mode starts step
k+1's generation before step k trains (its samples are one weight version stale, recorded).

Run directory: ``metrics.jsonl``, ``checkpoints/step_N/`` (policy, critic, optimizers,
``state.json`` with the step and the prompt position), ``final/`` (HF model), ``rlhf.png``;
with LoRA (``rlhf.lora_r``) also the adapters in the checkpoints and ``final-adapter/``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cluster.config import NatalConfig, RLHFConfig
from cluster.config.errors import InputError
from pipelines.posttrain import lora
from pipelines.posttrain.finetune import require_causal_lm
from pipelines.rl.prompts import (
    HELDOUT,
    PromptCursor,
    encode_prompts,
    read_prompts,
    split_heldout,
    write_prompts,
)

CHECKPOINTS = "checkpoints"


# --- pure pieces ----------------------------------------------------------------------------


def sample_advantages(scores: list[float], groups: list[int], algo: str) -> list[float]:
    """Per-sample advantages from rewards grouped by prompt (GRPO or RLOO).

    Samples with a NaN score (a failed reward) must have been removed before: every group
    here holds the valid samples of one prompt.
    """
    import torch

    from actors.algorithms import grpo_advantages, rloo_advantages

    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    advantages = [0.0] * len(scores)
    for members in by_group.values():
        rewards = torch.tensor([[scores[i] for i in members]], dtype=torch.float64)
        if len(members) < 2:
            values = [0.0]
        elif algo == "rloo":
            values = rloo_advantages(rewards)[0].tolist()
        else:
            values = grpo_advantages(rewards)[0].tolist()
        for i, value in zip(members, values, strict=True):
            advantages[i] = value
    return advantages


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (one whose ``state.json`` was written last)."""
    done = [p for p in (run_dir / CHECKPOINTS).glob("step_*") if (p / "state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)


def step_metrics(samples: list[Any], scores: list[float], step: int) -> dict[str, float]:
    lengths = [len(s.response_ids) for s in samples]
    return {
        "reward_mean": float(np.mean(scores)) if scores else math.nan,
        "reward_std": float(np.std(scores)) if scores else math.nan,
        "response_length": float(np.mean(lengths)) if lengths else 0.0,
        "staleness": float(np.mean([step - 1 - s.weight_version for s in samples]))
        if samples
        else 0.0,
    }


# --- the loop -------------------------------------------------------------------------------


class RLHFLoop:
    """Owns the actors of one run; :meth:`run` drives the steps."""

    def __init__(
        self,
        cfg: RLHFConfig,
        policy: str,
        prompts_file: str,
        output: str,
    ) -> None:
        from transformers import AutoTokenizer

        lora.check_targets(require_causal_lm(policy), cfg, "rlhf", policy)
        self.cfg, self.output = cfg, Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.tokenizer_dir = self.reference_dir = policy
        self.tokenizer = AutoTokenizer.from_pretrained(policy)
        self.rows, held = split_heldout(read_prompts(prompts_file), cfg.heldout_fraction, cfg.seed)
        self.heldout = len(held)
        write_prompts(str(self.output / HELDOUT), held)
        self.encoded, self.skipped = encode_prompts(
            self.rows, self.tokenizer, cfg.max_prompt_tokens
        )
        usable = [i for i, ids in enumerate(self.encoded) if ids]
        checkpoint = latest_checkpoint(self.output)
        state = json.loads((checkpoint / "state.json").read_text()) if checkpoint else {}
        self.start_step = state.get("step", 0)
        self.cursor = PromptCursor(usable, cfg.seed, state.get("position", 0))
        self.policy_dir = str(checkpoint / "policy") if checkpoint else policy
        self.checkpoint = checkpoint
        self.errors: Counter = Counter()

    # actors ---------------------------------------------------------------------------------

    def start_actors(self) -> None:
        from actors.group import ActorGroup

        self.actors = ActorGroup(
            self.cfg,
            self.policy_dir,
            self.reference_dir,
            str(self.checkpoint) if self.checkpoint else None,
            self.start_step,
        )
        info = self.actors.start()
        self.check_vocab(info["vocab_size"], info["max_model_len"])

    def check_vocab(self, engine_vocab: int, max_model_len: int) -> None:
        if len(self.tokenizer) > engine_vocab:
            raise InputError(
                f"tokenizer has {len(self.tokenizer)} tokens but the policy's vocabulary is "
                f"{engine_vocab}: they do not belong together"
            )
        if self.cfg.max_prompt_tokens + self.cfg.max_new_tokens > max_model_len:
            raise InputError(
                f"max_prompt_tokens + max_new_tokens = "
                f"{self.cfg.max_prompt_tokens + self.cfg.max_new_tokens} exceeds the model's "
                f"context of {max_model_len} tokens"
            )

    # one step -------------------------------------------------------------------------------

    def gen_params(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "n": c.group_size,
            "max_new_tokens": c.max_new_tokens,
            "temperature": c.temperature,
            "top_p": c.top_p,
        }

    def submit_generation(self) -> tuple[list[Any], list[int]]:
        indices = self.cursor.take(self.cfg.prompts_per_step)
        prompts = [(i, self.encoded[i]) for i in indices]
        return self.actors.pool.submit(prompts, self.gen_params()), indices

    def train_on(
        self,
        samples: list[Any],
        step: int,
        times: dict[str, float],
        before_sync: Any = None,
    ) -> dict[str, Any]:
        """Score, train and sync one step's samples; ``before_sync()`` runs just before the sync."""
        cfg = self.cfg
        started = time.perf_counter()
        rows = [self.rows[s.prompt_index] for s in samples]  # the whole row: messages, fields
        scored = self.actors.score(rows, [s.text for s in samples])
        times["score"] = time.perf_counter() - started
        self.errors.update(scored["errors"])
        keep = [i for i, v in enumerate(scored["scores"]) if not math.isnan(v)]
        dropped = len(samples) - len(keep)
        samples = [samples[i] for i in keep]
        scores = [scored["scores"][i] for i in keep]
        if not samples:
            raise InputError(f"step {step}: no answer could be scored ({dict(self.errors)})")
        advantages = (
            sample_advantages(scores, [s.prompt_index for s in samples], cfg.algo)
            if cfg.algo != "ppo"
            else [0.0] * len(samples)
        )
        batch = [
            {
                "prompt_ids": s.prompt_ids,
                "response_ids": s.response_ids,
                "logprobs": s.logprobs,
                "score": score,
                "advantage": adv,
            }
            for s, score, adv in zip(samples, scores, advantages, strict=True)
            if s.response_ids
        ]
        row = step_metrics(samples, scores, step)
        times["train"] = times["sync"] = 0.0
        if before_sync is not None:
            before_sync()
        if len(batch) < len(self.actors.learners):
            # too few answers survived scoring to give every learner a shard: no update, counted
            self.errors["step skipped: fewer usable answers than learners"] += 1
            row["skipped_update"] = 1
            return {**row, "reward_errors": dropped, "trained_samples": len(batch)}
        started = time.perf_counter()
        results = self.actors.train(batch)
        times["train"] = time.perf_counter() - started
        started = time.perf_counter()
        row["weight_load_s"] = self.actors.sync(step)
        times["sync"] = time.perf_counter() - started
        for key in results[0]:
            row[key] = float(np.mean([r[key] for r in results if key in r]))
        row["reward_errors"] = dropped
        row["trained_samples"] = len(batch)
        return row

    def run(self) -> dict[str, Any]:
        from pipelines.training.metrics import MetricsLog, Progress

        cfg = self.cfg
        log = MetricsLog(str(self.output), self.start_step)
        self.start_actors()
        bar = Progress(cfg.steps, self.start_step, "rlhf")
        pending, _ = self.submit_generation() if self.start_step < cfg.steps else (None, [])
        step_started = time.perf_counter()
        ready: list[Any] | None = None

        def drain() -> None:
            # A broadcast reaches an engine only after the generation queued before it: take
            # that generation's samples first, so a crash there is handled before the sync.
            nonlocal ready
            ready = self.actors.pool.collect(pending, self.gen_params())

        try:
            for step in range(self.start_step + 1, cfg.steps + 1):
                times: dict[str, float] = {}
                started = time.perf_counter()
                samples = (
                    ready
                    if ready is not None
                    else self.actors.pool.collect(pending, self.gen_params())
                )
                ready = None
                times["generate"] = time.perf_counter() - started
                overlap = cfg.mode == "async" and step < cfg.steps
                if overlap:
                    pending, _ = self.submit_generation()  # overlaps training of this step
                hook = drain if overlap and cfg.weight_sync == "broadcast" else None
                row = self.train_on(samples, step, times, hook)
                if cfg.mode == "sync" and step < cfg.steps:
                    pending, _ = self.submit_generation()
                elapsed = time.perf_counter() - step_started
                step_started = time.perf_counter()
                tokens = sum(len(s.response_ids) for s in samples)
                row.update(
                    step=step,
                    samples=len(samples),
                    samples_per_s=len(samples) / elapsed,
                    tokens_per_s=tokens / elapsed,
                    step_seconds=elapsed,
                    rollout_restarts=self.actors.pool.restarts,
                    **{f"time_{k}": v for k, v in times.items()},
                )
                row["sync_share"] = times["sync"] / elapsed
                log.write(row)
                bar.update(step, row)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    self.save_checkpoint(step)
            self.export()
        finally:
            bar.close()
            self.actors.shutdown()
        return self.summary()

    # persistence ----------------------------------------------------------------------------

    def save_checkpoint(self, step: int) -> Path:
        directory = self.output / CHECKPOINTS / f"step_{step}"
        self.actors.save(str(directory), self.tokenizer_dir)
        state = {"step": step, "position": self.cursor.position}
        (directory / "state.json").write_text(json.dumps(state))
        for old in (self.output / CHECKPOINTS).glob("step_*"):
            if old != directory and int(old.name.split("_")[1]) < step:
                shutil.rmtree(old, ignore_errors=True)
        return directory

    def export(self) -> None:
        final = self.save_checkpoint(self.cfg.steps)
        for part, name in (("policy", "final"), ("policy-adapter", "final-adapter")):
            target = self.output / name
            shutil.rmtree(target, ignore_errors=True)
            if (final / part).exists():  # the adapter exists with LoRA only
                shutil.copytree(final / part, target)

    def summary(self) -> dict[str, Any]:
        from pipelines.training.metrics import read

        rows = read(str(self.output))
        plot_curves(rows, self.output / "rlhf.png")
        counts = {"steps": len(rows), "prompts": len(self.rows), "heldout_prompts": self.heldout}
        counts.update(self.skipped)
        counts.update({f"reward_error: {k}": v for k, v in self.errors.items()})
        out: dict[str, Any] = {
            "stage": "rlhf",
            "counts": counts,
            "final": str(self.output / "final"),
            "heldout": str(self.output / HELDOUT),
        }
        if rows:
            first, last = rows[0], rows[-1]
            out["reward_first"] = round(first["reward_mean"], 4)
            out["reward_last"] = round(last["reward_mean"], 4)
            out["kl_last"] = round(last.get("kl", 0.0), 5)
            out["samples_per_s"] = round(float(np.mean([r["samples_per_s"] for r in rows])), 2)
            out["sync_share"] = round(float(np.mean([r["sync_share"] for r in rows])), 4)
        return out


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Reward, KL and the time split per step, one PNG."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    mean = np.array([r["reward_mean"] for r in rows])
    std = np.array([r["reward_std"] for r in rows])
    axes[0].plot(steps, mean, label="reward mean")
    axes[0].fill_between(steps, mean - std, mean + std, alpha=0.2, label="± std")
    axes[0].set_title("reward")
    axes[1].plot(steps, [r.get("kl", 0.0) for r in rows], color="tab:red")
    axes[1].set_title("KL(policy ‖ reference)")
    bottom = np.zeros(len(rows))
    for key in ("time_generate", "time_score", "time_train", "time_sync"):
        values = np.array([r.get(key, 0.0) for r in rows])
        axes[2].bar(steps, values, bottom=bottom, label=key[5:])
        bottom += values
    axes[2].set_title("seconds per step")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def run(cfg: NatalConfig, policy: str, prompts: str, output: str) -> dict[str, Any]:
    """Run the loop (resuming from ``output``'s latest checkpoint) and export ``output/final``."""
    from cluster.runtime import ensure_ray

    ensure_ray(cfg.runtime)
    return RLHFLoop(cfg.rlhf, policy, prompts, output).run()
