"""``natal pretrain``: a Llama model from a preset, trained on token shards with Ray Train.

All the training machinery (DDP/FSDP2, checkpoints and resume, failures, metrics, export)
is :mod:`pipelines.training.loop`; this module is the causal-LM task on packed tokens and
the checks that fail fast, before any worker starts: a corpus too small for one batch,
shards tokenized with another tokenizer, a sequence length above the model's maximum,
more workers than the cluster has room for, an unwritable checkpoint path.

Writes ``RUNDIR/final`` (HF model + tokenizer + generation config), ``RUNDIR/metrics.jsonl``,
``RUNDIR/loss.png``, ``RUNDIR/checkpoints/``, ``RUNDIR/config.yaml``, ``RUNDIR/summary.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from cluster.config import NatalConfig, PretrainConfig, dump_config
from cluster.config.errors import ConfigError, InputError
from pipelines.data import storage
from pipelines.pretrain.bpe import load_tokenizer, save_tokenizer, tokenizer_hash
from pipelines.pretrain.token_shards import ShardReader, read_index, sample_indices
from pipelines.training.loop import TrainTask, WorkerContext, fit
from pipelines.training.metrics import flops_per_token
from pipelines.training.presets import PRESETS, llama_config


class CausalLMTask(TrainTask):
    """Next-token prediction on packed sequences; documents are separated by eos."""

    name = "pretrain"

    def __init__(
        self, shard_dir: str, tokenizer_dir: str, index: dict[str, Any], cfg: PretrainConfig
    ):
        self.shard_dir, self.tokenizer_dir, self.index, self.cfg = (
            shard_dir,
            tokenizer_dir,
            index,
            cfg,
        )
        tokenizer = load_tokenizer(tokenizer_dir)
        end_of_turn = tokenizer.convert_tokens_to_ids(tokenizer.extra_special_tokens[-1:])
        self.special = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "stop_token_ids": [tokenizer.eos_token_id, *end_of_turn],
        }
        self.vocab_size = len(tokenizer)
        self.sample: str = ""

    def model_config(self) -> Any:
        return llama_config(
            self.cfg.preset,
            self.vocab_size,
            bos_token_id=self.special["bos_token_id"],
            eos_token_id=self.special["eos_token_id"],
            pad_token_id=self.special["pad_token_id"],
            max_seq_len=self.cfg.max_seq_len,
        )

    def build_model(self, ctx: WorkerContext) -> nn.Module:
        from transformers import LlamaForCausalLM

        return LlamaForCausalLM(self.model_config())

    def initial_position(self) -> dict[str, Any]:
        return {"samples": 0}

    def batches(self, ctx: WorkerContext, position: dict[str, Any]) -> Iterator[tuple[dict, dict]]:
        reader = ShardReader(self.shard_dir, self.index, "train")
        samples, batch = int(position["samples"]), self.cfg.micro_batch
        while True:
            indices = sample_indices(
                samples, ctx.rank, ctx.world_size, batch, reader.sequences, self.cfg.seed
            )
            samples += ctx.world_size * batch
            tokens = torch.from_numpy(reader.batch(indices))
            yield {"input_ids": tokens}, {"samples": samples}

    def compute_loss(self, model: nn.Module, batch: dict, ctx: WorkerContext):
        ids = batch["input_ids"]
        out = model(input_ids=ids, labels=ids, use_cache=False)
        return out.loss, {"tokens": ids.numel()}

    def evaluate(self, model: nn.Module, ctx: WorkerContext) -> dict[str, float]:
        """Mean loss over the same validation sequences every time (all ranks, equal counts)."""
        reader = ShardReader(self.shard_dir, self.index, "val")
        if reader.sequences == 0:
            return {}
        batch = self.cfg.micro_batch
        steps = min(self.cfg.eval_batches, math.ceil(reader.sequences / (batch * ctx.world_size)))
        total = 0.0
        for step in range(steps):
            first = (step * ctx.world_size + ctx.rank) * batch
            indices = [(first + j) % reader.sequences for j in range(batch)]
            ids = torch.from_numpy(reader.batch(indices)).to(ctx.device)
            total += float(model(input_ids=ids, labels=ids, use_cache=False).loss)
        val_loss = ctx.all_mean({"val_loss": total / steps})["val_loss"]
        return {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0))}

    def flops_per_token(self, model: torch.nn.Module) -> float:
        return flops_per_token(model, int(self.index["seq_len"]))

    def export(self, model: nn.Module, directory: str, ctx: WorkerContext) -> None:
        """HF model + tokenizer + generation config (stops at eos and at end-of-turn)."""
        from transformers import GenerationConfig

        model.save_pretrained(directory)
        save_tokenizer(load_tokenizer(self.tokenizer_dir), directory)
        GenerationConfig(
            bos_token_id=self.special["bos_token_id"],
            eos_token_id=self.special["stop_token_ids"],
            pad_token_id=self.special["pad_token_id"],
        ).save_pretrained(directory)
        self.sample = sample_text(model, directory, self.cfg.sample_prompt, self.cfg.seed)

    def after_export(self, directory: str, ctx: WorkerContext) -> dict[str, Any]:
        return {"sample": self.sample}


def sample_text(
    model: nn.Module, tokenizer_dir: str, prompt: str, seed: int, tokens: int = 48
) -> str:
    """A sampled continuation of ``prompt`` (top-k 40, temperature 0.8): what the model learned."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(next(model.parameters()).device)
    torch.manual_seed(seed)
    model.eval()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=tokens, do_sample=True, top_k=40, temperature=0.8)
    return tokenizer.decode(out[0], skip_special_tokens=True)


def check_inputs(index: dict[str, Any], tokenizer_dir: str, cfg: PretrainConfig) -> None:
    """Every mismatch the user can fix, before a worker starts."""
    tok_hash = tokenizer_hash(tokenizer_dir)
    if index["tokenizer_hash"] != tok_hash:
        raise InputError(
            f"tokenizer/model vocabulary mismatch: the shards were tokenized with tokenizer "
            f"{index['tokenizer_hash'][:12]} ({index.get('tokenizer', '?')}), not with "
            f"{tokenizer_dir} ({tok_hash[:12]}); re-run tokenize or pass the same --tokenizer"
        )
    max_len = cfg.max_seq_len or PRESETS[cfg.preset]["max_position_embeddings"]
    if int(index["seq_len"]) > max_len:
        raise ConfigError(
            f"sequence length {index['seq_len']} of the shards is above the model's maximum "
            f"{max_len} (preset {cfg.preset}); set pretrain.max_seq_len or tokenize shorter"
        )
    needed = cfg.micro_batch * cfg.workers
    if int(index["train"]["sequences"]) < needed:
        raise InputError(
            f"corpus too small: {index['train']['sequences']} training sequences, fewer than "
            f"one batch ({cfg.workers} workers × micro_batch {cfg.micro_batch})"
        )


def check_cluster(cfg: PretrainConfig, workers: int) -> None:
    """On natal's own local cluster, fail instead of waiting forever for workers it cannot
    place. (A cluster natal joins may autoscale: there Ray Train waits for the nodes.)"""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if workers * cfg.cpus_per_worker > cpus:
        raise ConfigError(
            f"pretrain.workers={workers} × cpus_per_worker={cfg.cpus_per_worker} needs more "
            f"CPUs than the cluster has ({cpus:g})"
        )
    if cfg.use_gpu and workers > gpus:
        raise ConfigError(f"pretrain.workers={workers} GPU workers, cluster has {gpus:g} GPUs")


def run(cfg: NatalConfig, data: str, tokenizer: str, output: str) -> dict[str, Any]:
    """Pre-train (or resume, when ``output`` holds checkpoints) and export ``output/final``."""
    from cluster.runtime import ensure_ray, joins_existing_cluster

    pcfg = cfg.pretrain
    data, tokenizer, output = (storage.absolute(p) for p in (data, tokenizer, output))
    index = read_index(data)
    check_inputs(index, tokenizer, pcfg)
    storage.ensure_dir(output)
    storage.write_text(storage.join(output, "config.yaml"), dump_config(cfg))
    ensure_ray(cfg.runtime)
    if not joins_existing_cluster(cfg.runtime):
        check_cluster(pcfg, min(cfg.resources.train_min_workers or pcfg.workers, pcfg.workers))
    task = CausalLMTask(data, tokenizer, index, pcfg)
    summary = fit(task, pcfg, output, "pretrain", cfg.resources.train_min_workers)
    versus = against_plan(cfg, summary, storage.join(output, "final"))
    storage.write_text(storage.join(output, "plan.json"), json.dumps(versus, indent=2) + "\n")
    return {
        "stage": "pretrain",
        "counts": {"steps": summary["steps"], "tokens": summary["tokens"]},
        **{k: v for k, v in summary.items() if k not in ("steps", "tokens")},
        "breakdown": {"measured vs plan": {k: f"{v:.4g}" for k, v in versus.items()}},
    }


def count_parameters(model_dir: str) -> int:
    """Parameters of an exported model, from its safetensors headers (no weights loaded)."""
    fs, path = storage.filesystem(model_dir)
    total = 0
    for name in sorted(fs.glob(path.rstrip("/") + "/*.safetensors")):
        with fs.open(name, "rb") as fh:  # header: u64 length, then JSON {tensor: {shape...}}
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        total += sum(
            math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__"
        )
    return total


def against_plan(cfg: NatalConfig, summary: dict[str, Any], final_dir: str) -> dict[str, float]:
    """The run's measured FLOPs (6·N·T), MFU and energy beside ``natal plan``'s estimate.

    CPU runs are planned as ``workers × cpus_per_worker`` cores, GPU runs as ``workers`` of
    ``plan.accelerator``; MFU here is against the datasheet peak of pipelines/training/plan.py (the
    training metrics' MFU is against the measured matmul peak).
    """
    from pipelines.training.plan import run_vs_plan

    pcfg = cfg.pretrain
    accelerator = cfg.plan.accelerator if pcfg.use_gpu else "cpu"
    count = pcfg.workers if pcfg.use_gpu else max(1, round(pcfg.workers * pcfg.cpus_per_worker))
    return run_vs_plan(
        count_parameters(final_dir),
        summary["tokens"],
        summary["train_seconds"],
        accelerator,
        count,
        cfg.plan.mfu,
        cfg.plan.watts,
    )
