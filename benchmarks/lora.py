"""LoRA against full fine-tuning in natal, and natal LoRA SFT against TRL's SFTTrainer + peft.

    .venv/bin/python benchmarks/lora.py [--preset small] [--rank 16] [--steps 8] [--batch 8]
                                        [--max-len 256] [--threads 2] [--repeats 2]

Three tables:

1. **Full vs LoRA, one fresh process each** (so peak RSS is that mode's alone), natal's own code
   without Ray: SFT steps (``SFTTask.compute_loss`` + AdamW, as a Ray Train worker runs them)
   and RLHF learner steps (``LearnerWorker.train_step`` on GRPO-shaped samples, policy +
   reference: a second full copy for full fine-tuning, none with LoRA). Trainable parameters,
   optimizer state (Adam's moments after a step), peak RSS, samples/s, and the seconds to
   prepare the weights the rollout engines get (``state_numpy``: merged with LoRA).
2. **natal LoRA SFT through Ray Train vs TRL SFTTrainer with the same peft LoraConfig**: same
   random-init model, conversations (Dolly + Alpaca from ../shared/data when present),
   assistant-only loss, packing off, batch, sequence cap, steps, learning rate, threads; the
   two alternate ``--repeats`` times and the medians are compared. Time of the training steps
   only on both sides (natal's Ray start-up printed apart).
3. **Real sizes on the meta device** (no weights read): trainable share and optimizer state of
   LoRA r=``--rank`` on every linear layer for natal's presets up to 7B (32k vocabulary).

Prints the machine's load, threads and versions before and after. Needs the bench extra.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402  (benchmarks/common.py, beside this script)
    StepClock,
    build_model,
    conversations,
    machine,
    natal_run,
    trl_args,
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def optimizer_bytes(optimizer) -> int:
    import torch

    return sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t) and t.dim() > 0
    )


def counts(model) -> tuple[int, int]:
    """(trainable, all) parameters."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def timed(step, steps: int) -> float:
    """Samples per second over ``steps`` calls of ``step`` (each returns its sample count),
    after one warm-up call (which also allocates Adam's moments)."""
    step()
    started = time.perf_counter()
    samples = sum(step() for _ in range(steps))
    return samples / (time.perf_counter() - started)


def sft_worker(
    model_dir: str, data: str, args: argparse.Namespace, rank: int, checkpointing: bool
) -> dict:
    import torch

    from cluster.config import SFTConfig
    from pipelines.data.stats import StageStats
    from pipelines.posttrain import finetune, sft
    from pipelines.posttrain.chat_data import load_conversations
    from pipelines.training.optim import build_optimizer

    cfg = SFTConfig(
        micro_batch=args.batch, max_seq_len=args.max_len, packing=False, val_fraction=0,
        lr=args.lr, weight_decay=0.0, lora_r=rank, lora_alpha=2.0 * max(rank, 1),
    )  # fmt: skip
    stats = StageStats("bench")
    tokenizer = finetune.load_tokenizer(model_dir)
    rows, _, _ = sft.prepare(tokenizer, load_conversations([data], None, stats), cfg, stats)
    task = sft.SFTTask(model_dir, tokenizer, rows, [], cfg)
    ctx = SimpleNamespace(rank=0, world_size=1, device=torch.device("cpu"))
    baseline = peak_rss_mib()
    model = task.build_model(ctx)
    if checkpointing:  # what the loop does with sft.activation_checkpointing
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = build_optimizer(model, cfg)
    batches = task.batches(ctx, task.initial_position())

    def step() -> int:
        batch, _ = next(batches)
        loss, _ = task.compute_loss(model, batch, ctx)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return batch["input_ids"].shape[0]

    rate = timed(step, args.steps)
    trainable, total = counts(model)
    return {
        "trainable": trainable,
        "params": total,
        "optimizer_bytes": optimizer_bytes(optimizer),
        "samples_per_s": rate,
        "peak_rss_mib": peak_rss_mib(),
        "rss_over_imports_mib": peak_rss_mib() - baseline,
    }


def rlhf_worker(model_dir: str, args: argparse.Namespace, rank: int) -> dict:
    import random

    from actors.learner import LearnerWorker
    from cluster.config import RLHFConfig

    rng = random.Random(0)
    vocab = 2000
    samples = [
        {
            "prompt_ids": [rng.randrange(3, vocab) for _ in range(32)],
            "response_ids": [rng.randrange(3, vocab) for _ in range(args.response_len)],
            "logprobs": [-2.0] * args.response_len,
            "advantage": 1.0 if i % 2 else -1.0,
        }
        for i in range(args.rl_samples)
    ]
    baseline = peak_rss_mib()
    cfg = RLHFConfig(
        lora_r=rank, lora_alpha=2.0 * max(rank, 1), minibatch_size=args.batch, lr=args.lr
    )
    worker = LearnerWorker(model_dir, cfg)

    def step() -> int:
        worker.train_step(samples)
        return len(samples)

    rate = timed(step, max(1, args.steps // 4))
    worker.state_numpy()  # warm-up
    started = time.perf_counter()
    worker.state_numpy()
    sync_prep = time.perf_counter() - started
    trainable, total = counts(worker.policy)
    return {
        "trainable": trainable,
        "params": total,
        "optimizer_bytes": optimizer_bytes(worker.optimizer),
        "samples_per_s": rate,
        "sync_prep_s": sync_prep,
        "peak_rss_mib": peak_rss_mib(),
        "rss_over_imports_mib": peak_rss_mib() - baseline,
    }


FORWARDED = ("steps", "batch", "max_len", "threads", "lr", "response_len", "rl_samples")


def in_fresh_process(
    stage: str, rank: int, checkpointing: bool, model_dir: str, data: str, args
) -> dict:
    """One mode in its own process: its peak RSS is its own."""
    command = [sys.executable, __file__, "--worker", stage, "--worker-rank", str(rank)]
    command += ["--worker-checkpointing"] if checkpointing else []
    command += ["--worker-model", model_dir, "--worker-data", data]
    command += [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k in FORWARDED]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def trl_lora_sft(model_dir: str, convs: list, args, out: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_config = LoraConfig(
        r=args.rank, lora_alpha=2.0 * args.rank, lora_dropout=0.0,
        target_modules="all-linear", task_type="CAUSAL_LM",
    )  # fmt: skip
    clock = StepClock()
    trainer = SFTTrainer(
        model=model,
        args=trl_args(
            SFTConfig, out, args, max_length=args.max_len, assistant_only_loss=True, packing=False
        ),
        train_dataset=Dataset.from_list([{"messages": c} for c in convs]),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[clock],
    )
    trainer.train()
    tokens = trainer.state.num_input_tokens_seen or max(
        (row.get("num_tokens", 0) for row in trainer.state.log_history), default=0
    )
    return {
        "samples": args.steps * args.batch,
        "tokens": tokens,
        "seconds": clock.end - clock.start,
    }


def real_sizes(rank: int) -> list[tuple[str, int, int]]:
    """(preset, parameters, LoRA-trainable) built on the meta device."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from pipelines.training.presets import llama_config

    rows = []
    for preset in ("small", "1b", "7b"):
        with torch.device("meta"):
            model = LlamaForCausalLM(llama_config(preset, 32000))
            total = sum(p.numel() for p in model.parameters())
            config = LoraConfig(r=rank, target_modules="all-linear", task_type="CAUSAL_LM")
            trainable, _ = counts(get_peft_model(model, config))
        rows.append((preset, total, trainable))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="natal preset for tables 1 and 2")
    parser.add_argument("--rank", type=int, default=16, help="LoRA r (alpha = 2r)")
    parser.add_argument("--steps", type=int, default=8, help="timed SFT steps (RLHF: a quarter)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--repeats", type=int, default=2, help="table 2: alternating runs")
    parser.add_argument("--response-len", type=int, default=64, help="RLHF answer tokens")
    parser.add_argument("--rl-samples", type=int, default=32, help="RLHF samples per step")
    parser.add_argument("--conversations", type=int, default=400)
    for name in ("worker", "worker-rank", "worker-model", "worker-data"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--worker-checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        rank = int(args.worker_rank)
        if args.worker == "sft":
            result = sft_worker(
                args.worker_model, args.worker_data, args, rank, args.worker_checkpointing
            )
        else:
            result = rlhf_worker(args.worker_model, args, rank)
        print(json.dumps(result))
        return

    print("before:", machine())
    work = Path(tempfile.mkdtemp(prefix="natal-bench-lora-"))
    convs = conversations(args.conversations)
    texts = [t["content"] for c in convs for t in c]
    model_dir = build_model(work / "model", texts, preset=args.preset)
    chat_file = work / "chats.jsonl"
    chat_file.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))

    print(f"\n1. full vs LoRA r={args.rank}, {args.preset} preset, one process per row")
    header = f"{'':5s} {'':10s} {'trainable':>12s} {'share':>7s} {'optim MiB':>10s}"
    print(header + f" {'peak RSS MiB':>13s} {'samples/s':>10s} {'sync prep s':>12s}")
    modes = [("sft", 0, False), ("sft", args.rank, False), ("sft", args.rank, True)]
    modes += [("rlhf", 0, False), ("rlhf", args.rank, False)]
    for stage, rank, checkpointing in modes:
        r = in_fresh_process(stage, rank, checkpointing, model_dir, str(chat_file), args)
        sync = f"{r['sync_prep_s']:12.3f}" if "sync_prep_s" in r else f"{'':12s}"
        mode = ("LoRA" if rank else "full") + ("+ckpt" if checkpointing else "")
        print(
            f"{stage:5s} {mode:10s} {r['trainable']:12,d} "
            f"{r['trainable'] / r['params']:7.2%} {r['optimizer_bytes'] / 2**20:10.1f} "
            f"{r['peak_rss_mib']:13.0f} {r['samples_per_s']:10.2f} {sync}"
        )

    print(f"\n2. LoRA r={args.rank} SFT, {args.steps} steps x {args.batch}, max_len {args.max_len}")
    lora_sets = [f"sft.lora_r={args.rank}", f"sft.lora_alpha={2.0 * args.rank}"]
    lora_sets.append("sft.weight_decay=0")
    rates: dict[str, list[tuple[float, float]]] = {"trl": [], "natal": [], "packed": []}
    startup = []
    for i in range(args.repeats):  # alternating, so a slow spell of the machine hits both
        trl = trl_lora_sft(model_dir, convs, args, work / f"trl-{i}")
        rates["trl"].append((trl["samples"] / trl["seconds"], trl["tokens"] / trl["seconds"]))
        for key, packing in (("natal", "false"), ("packed", "true")):
            sets = [*lora_sets, f"sft.packing={packing}"]
            run = natal_run("sft", model_dir, str(chat_file), args, work / f"{key}-{i}", sets)
            seconds = run["train_seconds"]
            rates[key].append((args.steps * args.batch / seconds, run["tokens"] / seconds))
            startup.append(round(run["wall"] - seconds, 1))
        print(
            f"   run {i + 1}: " + "  ".join(f"{k} {v[-1][1]:.0f} tok/s" for k, v in rates.items())
        )
    median = {
        k: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v))
        for k, v in rates.items()
    }
    names = {
        "trl": "TRL SFTTrainer + peft (packing off)",
        "natal": "natal sft (packing off)",
        "packed": "natal sft (packing on, isolated)",
    }
    print(f"   {'median over runs':38s} {'rows/s':>8s} {'tokens/s':>9s}")
    for key, (rows_s, tokens_s) in median.items():
        print(f"   {names[key]:38s} {rows_s:8.2f} {tokens_s:9.0f}")
    for key in ("natal", "packed"):
        ratio = median[key][1] / median["trl"][1]
        print(f"   {names[key]} / TRL+peft, tokens/s: {ratio:.2f}x")
    print(f"   natal outside the training steps (Ray Train start-up, export), s: {startup}")

    print(f"\n3. LoRA r={args.rank} on every linear layer at real sizes (meta device, 32k vocab)")
    print(f"{'preset':8s} {'params':>14s} {'trainable':>12s} {'share':>7s} {'Adam GiB full':>14s}")
    for preset, total, trainable in real_sizes(args.rank):
        full_gib, lora_gib = 8 * total / 2**30, 8 * trainable / 2**30  # two fp32 moments
        print(
            f"{preset:8s} {total:14,d} {trainable:12,d} {trainable / total:7.2%} "
            f"{full_gib:14.1f}  LoRA {lora_gib:.2f} GiB ({lora_gib / full_gib:.2%})"
        )
    print("after: ", machine())


if __name__ == "__main__":
    main()
