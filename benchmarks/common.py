"""What the benchmarks share: a fresh natal tokenizer + Llama preset saved as an HF directory,
the fine-tuning data, TRL's timing and settings, natal's fine-tuning runs, a machine line."""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def build_model(
    directory: Path,
    texts: list[str],
    vocab_size: int = 2048,
    preset: str = "tiny",
    max_seq_len: int = 1024,
) -> str:
    """Train natal's tokenizer on ``texts``, build the preset (random init), save both."""
    from transformers import LlamaForCausalLM

    from cluster.config import TokenizerConfig
    from pipelines.pretrain.bpe import save_tokenizer, train_tokenizer
    from pipelines.training.presets import llama_config

    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=vocab_size, min_frequency=1))
    save_tokenizer(tokenizer, str(directory))
    config = llama_config(
        preset,
        len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_seq_len=max_seq_len,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    return str(directory)


def machine(packages: tuple[str, ...] = ("torch", "transformers", "peft", "trl", "vllm")) -> str:
    """Load average, cores, torch threads and package versions: a loaded or mis-set run shows."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = " ".join(f"{p}={ver(p)}" for p in packages)
    return f"load {load} | {os.cpu_count()} cores | torch threads {torch.get_num_threads()} | {versions}"


def conversations(limit: int) -> list[list[dict]]:
    """Real instruction data when the shared folder is there, else generated conversations."""
    from pipelines.data.stats import StageStats
    from pipelines.posttrain.chat_data import load_conversations

    files = [
        SHARED / "sft" / "dolly-151.jsonl",
        SHARED / "sft" / "llamafactory-alpaca_en_demo.json",
    ]
    if all(f.exists() for f in files):
        return load_conversations([str(f) for f in files], None, StageStats("bench"))[:limit]
    return [
        [
            {"role": "user", "content": f"List the numbers from {i} to {i + 20}."},
            {"role": "assistant", "content": " ".join(str(n) for n in range(i, i + 21))},
        ]
        for i in range(limit)
    ]


class StepClock:
    """A TrainerCallback timing the training steps only (from the first step's start)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            start = end = None

            def on_step_begin(self, args, state, control, **kwargs):
                if self.start is None:
                    self.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                self.end = time.perf_counter()

        return _Clock()


def trl_args(config_cls, out: Path, args, **extra):
    return config_cls(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
        # TRL defaults to bf16 autocast and activation checkpointing; natal trains fp32 on CPU
        # without checkpointing (bf16 on a CPU without bf16 units is emulated: ~100x slower).
        bf16=False,
        gradient_checkpointing=False,
        **extra,
    )


def natal_run(stage: str, model_dir: str, data: str, args, out: Path, sets: list[str]) -> dict:
    from cluster.config import load_config
    from pipelines.posttrain import reward_model, sft

    cfg = load_config(
        None,
        [
            f"runtime.num_cpus={args.threads}",
            f"{stage}.cpus_per_worker={args.threads}",
            f"{stage}.micro_batch={args.batch}",
            f"{stage}.max_seq_len={args.max_len}",
            f"{stage}.lr={args.lr}",
            f"{stage}.min_lr={args.lr}",
            f"{stage}.warmup_steps=0",
            f"{stage}.log_every=10",
            f"{stage}.eval_every=0",
            f"{stage}.checkpoint_every=0",
            f"{stage}.val_fraction=0",
            *sets,
        ],
        {f"{stage}.max_steps": args.steps},
    )
    started = time.perf_counter()
    module = sft if stage == "sft" else reward_model
    stats = module.run(cfg, model_dir, [data], str(out))
    wall = time.perf_counter() - started
    return {**stats, "wall": wall}
