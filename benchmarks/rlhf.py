"""natal's GRPO loop vs TRL's GRPOTrainer on the same model, prompts, group size and lengths.

    .venv/bin/python benchmarks/rlhf.py [--steps 12] [--prompts-per-step 8] [--group-size 8]
                                        [--max-new-tokens 48] [--preset tiny]

Both run on this machine's CPUs, one after the other in one process tree: natal with one vLLM
rollout actor and one learner actor (Ray, in-process engine), TRL with its own transformers
generation. The reward is the same rule (``pipelines.rl.verifiers:digit_fraction``). Prints
samples/s (the first step, which includes engine warm-up, excluded for both), natal's time
split per step and the weight-sync share of the step. Needs ``pip install trl``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import build_model  # noqa: E402  (benchmarks/common.py, beside this script)

TEXT = (
    "The quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9. "
    "Numbers such as 12, 345 and 6789 appear in tables; words appear in sentences. "
)


def prompt_file(directory: Path, count: int) -> str:
    path = directory / "prompts.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"Write numbers, item {i}:"}) + "\n" for i in range(count))
    )
    return str(path)


def run_natal(model: str, prompts: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    import ray

    from cluster.config import load_config
    from pipelines.rl import rlhf

    cfg = load_config(
        None,
        [
            "runtime.num_cpus=2",
            "rlhf.algo=grpo",
            f"rlhf.steps={args.steps}",
            f"rlhf.prompts_per_step={args.prompts_per_step}",
            f"rlhf.group_size={args.group_size}",
            f"rlhf.max_new_tokens={args.max_new_tokens}",
            "rlhf.reward_fns=[pipelines.rl.verifiers:digit_fraction]",
            "rlhf.rollout_cpus=1",
            "rlhf.learner_cpus=0.5",
            "rlhf.reward_cpus=0.5",
            "rlhf.checkpoint_every=0",
            f"rlhf.minibatch_size={args.prompts_per_step * args.group_size}",
        ],
    )
    rlhf.run(cfg, model, prompts, str(out))
    ray.shutdown()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steady = rows[1:] or rows
    mean = lambda key: sum(r[key] for r in steady) / len(steady)  # noqa: E731
    return {
        "samples_per_s": sum(r["samples"] for r in steady) / sum(r["step_seconds"] for r in steady),
        "step_s": mean("step_seconds"),
        "generate_s": mean("time_generate"),
        "score_s": mean("time_score"),
        "train_s": mean("time_train"),
        "sync_s": mean("time_sync"),
        "sync_share": mean("sync_share"),
        "reward_first": rows[0]["reward_mean"],
        "reward_last": rows[-1]["reward_mean"],
    }


def run_trl(model: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from pipelines.rl.verifiers import digit_fraction

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.padding_side = "left"
    rows = [
        {"prompt": [{"role": "user", "content": f"Write numbers, item {i}:"}]} for i in range(64)
    ]

    def reward(completions, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [digit_fraction("", t) for t in texts]

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.started = 0.0

        def on_step_begin(self, *_, **__):
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.times.append(time.perf_counter() - self.started)

    batch = args.prompts_per_step * args.group_size
    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        num_generations=args.group_size,
        max_completion_length=args.max_new_tokens,
        max_steps=args.steps,
        learning_rate=1e-4,
        beta=0.05,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        temperature=1.0,
    )
    timer = StepTimes()
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32),
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    steady = timer.times[1:] or timer.times
    return {"samples_per_s": batch * len(steady) / sum(steady), "step_s": sum(steady) / len(steady)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="natal-bench-rlhf-") as tmp:
        work = Path(tmp)
        model = build_model(work / "model", [TEXT] * 200, vocab_size=512, preset=args.preset)
        prompts = prompt_file(work, 64)
        natal = run_natal(model, prompts, args, work / "natal")
        trl = run_trl(model, args, work / "trl")
    print(
        f"\nGRPO, preset {args.preset}, {args.prompts_per_step} prompts × {args.group_size} "
        f"answers × ≤{args.max_new_tokens} tokens, {args.steps} steps (first excluded)"
    )
    print(f"{'':24}{'natal':>12}{'TRL':>12}")
    print(f"{'samples/s':24}{natal['samples_per_s']:12.1f}{trl['samples_per_s']:12.1f}")
    print(f"{'seconds/step':24}{natal['step_s']:12.2f}{trl['step_s']:12.2f}")
    print(f"natal / TRL samples/s: {natal['samples_per_s'] / trl['samples_per_s']:.2f}×")
    print(
        "natal step split (s): generate {generate_s:.2f}  score {score_s:.2f}  "
        "train {train_s:.2f}  sync {sync_s:.3f}  → weight sync {share:.1%} of the step".format(
            share=natal["sync_share"], **natal
        )
    )
    print(f"natal reward: {natal['reward_first']:.3f} → {natal['reward_last']:.3f}")


if __name__ == "__main__":
    main()
