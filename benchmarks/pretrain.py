"""Pre-training throughput: natal on Ray Train (1 and 2 workers) against its peers, one run.

Peers, on the same model (preset ``tiny``), shards, micro-batch, optimizer and schedule:
- a bare single-process torch loop (what Ray costs: goal ≤ 5% at equal worker CPU),
- transformers' ``Trainer`` (goal: natal's throughput ≥ Trainer's).

"Equal worker CPU": natal with N workers of 1 CPU each against the bare loop and Trainer
with N torch threads. Steady-state tokens/s is wall-clock time over the steps after the first
``--warmup`` of each (Ray Train's ~12-14 s start-up is reported separately as wall time;
natal's final window, which holds its end-of-run evaluation, is left out). MFU uses one
matmul probe per thread count for everyone.

    .venv/bin/python benchmarks/pretrain.py --steps 40 --seq-len 256 --micro-batch 8

Data: ``--data SHARDDIR --tokenizer TOKDIR``, or built here from ``../shared/data/pretrain-text``
(else Python's documentation text) with natal's own tokenizer and tokenize stages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from cluster.config import RuntimeConfig, load_config  # noqa: E402
from cluster.runtime import ensure_ray  # noqa: E402
from pipelines.pretrain import bpe, llama, tokenize  # noqa: E402
from pipelines.pretrain.token_shards import ShardReader, read_index, sample_indices  # noqa: E402
from pipelines.training.metrics import flops_per_token, measure_peak_flops  # noqa: E402
from pipelines.training.optim import build_optimizer, warmup_cosine  # noqa: E402


def build_data(work: Path, seq_len: int) -> tuple[str, str]:
    from pretrain_corpus import write_corpus

    shared = ROOT.parent / "shared" / "data" / "pretrain-text"
    write_corpus(work / "corpus", shared if shared.is_dir() else None)
    cfg = load_config(values={"tokenizer.vocab_size": 2048, "tokenize.seq_len": seq_len})
    bpe.run(cfg, [str(work / "corpus")], str(work / "tok"))
    tokenize.run(cfg, [str(work / "corpus")], str(work / "tok"), str(work / "shards"))
    return str(work / "shards"), str(work / "tok")


def settings(args: argparse.Namespace) -> dict:
    return {
        "pretrain.max_steps": args.steps,
        "pretrain.micro_batch": args.micro_batch,
        "pretrain.lr": 3e-3,
        "pretrain.min_lr": 3e-4,
        "pretrain.warmup_steps": 5,
        "pretrain.log_every": args.warmup,
        "pretrain.eval_every": 0,
        "pretrain.checkpoint_every": 0,
        "pretrain.max_failures": 0,
    }


def model_and_optimizer(task: llama.CausalLMTask, cfg):
    torch.manual_seed(cfg.seed)
    model = task.build_model(None)
    optimizer = build_optimizer(model, cfg)
    return model, optimizer, warmup_cosine(optimizer, cfg)


def bare_loop(task: llama.CausalLMTask, cfg, threads: int, warmup: int) -> float:
    """The same steps in one process, no Ray, no DDP: steady tokens/s."""
    torch.set_num_threads(threads)
    model, optimizer, scheduler = model_and_optimizer(task, cfg)
    reader = ShardReader(task.shard_dir, task.index, "train")
    tokens, started = 0, 0.0
    for step in range(cfg.max_steps):
        if step == warmup:
            tokens, started = 0, time.perf_counter()
        idx = sample_indices(step * cfg.micro_batch, 0, 1, cfg.micro_batch, reader.sequences, 0)
        ids = torch.from_numpy(reader.batch(idx))
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        tokens += ids.numel()
    return tokens / (time.perf_counter() - started)


def hf_trainer(task: llama.CausalLMTask, cfg, threads: int, warmup: int, out: str) -> float:
    """transformers ``Trainer`` on the same shards and schedule: steady tokens/s."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    torch.set_num_threads(threads)
    reader = ShardReader(task.shard_dir, task.index, "train")

    class Shards(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return reader.sequences

        def __getitem__(self, i: int) -> dict:
            ids = torch.from_numpy(reader.sequence(i))
            return {"input_ids": ids, "labels": ids}

    class Clock(TrainerCallback):
        steps, started = 0, 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                Clock.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            Clock.steps = state.global_step - warmup

    torch.manual_seed(cfg.seed)
    model = task.build_model(None)
    arguments = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=cfg.micro_batch,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.betas[0],
        adam_beta2=cfg.betas[1],
        max_grad_norm=cfg.grad_clip,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        logging_steps=10**6,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    Trainer(model=model, args=arguments, train_dataset=Shards(), callbacks=[Clock()]).train()
    return Clock.steps * cfg.micro_batch * reader.seq_len / (time.perf_counter() - Clock.started)


def natal(
    data: str, tok: str, args: argparse.Namespace, workers: int, out: str
) -> tuple[float, float]:
    """natal pretrain with N one-CPU workers: (steady tokens/s from its metrics, wall s)."""
    values = {**settings(args), "pretrain.workers": workers}
    cfg = load_config(values=values)
    started = time.perf_counter()
    llama.run(cfg, data, tok, out)
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    # wall clock from the first log line (end of warm-up) to the one before the last (the
    # last holds the final evaluation): all the loop does between steps (metric all-reduce,
    # logging) is counted
    steady = rows[:-1]
    tokens = sum(r["tokens"] for r in steady[1:])
    return tokens / (steady[-1]["time"] - steady[0]["time"]), wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="token shards (default: built here)")
    parser.add_argument("--tokenizer", help="their tokenizer")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of tokens/s")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="natal-bench-pretrain-"))
    ensure_ray(RuntimeConfig(num_cpus=2))
    data, tok = (args.data, args.tokenizer) if args.data else build_data(work, args.seq_len)
    cfg = load_config(values=settings(args)).pretrain
    task = llama.CausalLMTask(data, tok, read_index(data), cfg)
    flops = flops_per_token(LlamaForCausalLM(task.model_config()), int(task.index["seq_len"]))
    results = []
    for workers in (1, 2):
        torch.set_num_threads(workers)
        peak = measure_peak_flops(torch.device("cpu"))
        bare = bare_loop(task, cfg, workers, args.warmup)
        trainer = hf_trainer(task, cfg, workers, args.warmup, str(work / f"hf{workers}"))
        ray_tps, wall = natal(data, tok, args, workers, str(work / f"natal{workers}"))
        results.append((workers, peak, bare, trainer, ray_tps, wall))

    print(
        f"\nmodel: tiny ({task.vocab_size} vocab), seq {task.index['seq_len']}, "
        f"micro-batch {cfg.micro_batch}, {args.steps} steps ({args.warmup} warm-up left out)"
    )
    print(
        f"{'CPU':>3} {'bare tok/s':>11} {'Trainer tok/s':>14} {'natal tok/s':>12} "
        f"{'Ray cost':>9} {'natal/Trainer':>14} {'MFU bare':>9} {'MFU natal':>10} {'natal wall s':>13}"
    )
    for workers, peak, bare, trainer, ray_tps, wall in results:
        print(
            f"{workers:>3} {bare:>11.0f} {trainer:>14.0f} {ray_tps:>12.0f} "
            f"{1 - ray_tps / bare:>9.1%} {ray_tps / trainer:>14.2f} "
            f"{bare * flops / peak:>9.1%} {ray_tps * flops / peak:>10.1%} {wall:>13.1f}"
        )
    print("goals: Ray cost ≤ 5% of the bare loop at equal CPU; natal/Trainer ≥ 1.00")


if __name__ == "__main__":
    main()
