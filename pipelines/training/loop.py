"""ONE Ray Train driver and worker loop for every training stage (pretrain, SFT, reward, DPO).

A stage describes *what* it trains with a small :class:`TrainTask`; this module does the rest
the same way for all of them: Ray Train ``TorchTrainer`` (Train v2 API), DDP or FSDP2,
AdamW + warmup/cosine, gradient accumulation and clipping, bf16 autocast on GPU, activation
checkpointing, metrics (JSONL + progress bar + PNG), validation, checkpoints every N steps
(model, optimizer, scheduler, data position, RNG) with resume, restarts after a worker dies,
and the final Hugging Face export.

The task protocol (subclass :class:`TrainTask`, override what you need)::

    class MyTask(TrainTask):
        def build_model(self, ctx) -> nn.Module          # fp32, on CPU; a HF PreTrainedModel
        def initial_position(self) -> dict               # JSON-able data position
        def batches(self, ctx, position) -> Iterator[(batch, position_after)]
        def compute_loss(self, model, batch, ctx) -> (loss, {"tokens": n, ...})
        def loss_weight(self, batch) -> float                      # what the mean is over
        def evaluate(self, model, ctx) -> {"val_loss": x, ...}     # optional
        def flops_per_token(self, model) -> float                  # optional, for MFU
        def export(self, model, directory, ctx) -> None             # optional, rank 0 only
        def after_export(self, directory, ctx) -> dict              # optional, rank 0 only

Rules a task follows:
- ``batches(ctx, position)`` yields this rank's micro-batches (dicts of tensors on CPU; the
  loop moves them to the device) forever, starting at ``position``, each with the position
  *after* it. Positions must be global (equal on every rank after the same micro-steps),
  so that a run resumes from rank 0's position, even with another number of workers.
- ``compute_loss`` gets the wrapped model (DDP/FSDP: call it, don't reach into it) and
  returns the mean loss of the micro-batch plus float metrics; ``tokens`` (trained tokens in
  the batch) feeds tokens/s and MFU. Other metrics are averaged over ranks and logged.
- ``loss_weight(batch)`` is the count that mean is taken over (target tokens, pairs): each
  micro-batch's loss weighs by its share of the whole optimizer step's count, over every
  micro-batch and rank, so a step's gradient does not depend on how its data is split.
- Frozen helpers (e.g. DPO's reference model) are built by the task itself inside
  ``build_model`` and kept on ``self`` (``ctx.device`` says where); only the returned
  module is optimized, checkpointed and exported.
- ``evaluate`` is called on every rank (it may use collectives through ``ctx.all_mean``).

Entry point: :func:`fit` (driver side) returns the run's summary.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.data import storage
from pipelines.training import checkpoint as ckpt_io
from pipelines.training import metrics as metrics_io
from pipelines.training.optim import build_optimizer, warmup_cosine

Batch = dict[str, torch.Tensor]


@dataclass
class WorkerContext:
    """What a task may know about the worker it runs in."""

    rank: int
    world_size: int
    device: torch.device
    config: Any  # the stage's TrainingConfig subclass
    run_dir: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average float metrics over all workers (a no-op with one worker)."""
        if self.world_size == 1 or not values:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        tensor = tensor.to(self.device)
        torch.distributed.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}

    def all_sum(self, values: dict[str, float]) -> dict[str, float]:
        return {k: v * self.world_size for k, v in self.all_mean(values).items()}


class TrainTask:
    """Base of the training tasks: see the module docstring for the protocol."""

    name = "train"

    def build_model(self, ctx: WorkerContext) -> nn.Module:
        raise NotImplementedError

    def initial_position(self) -> dict[str, Any]:
        return {}

    def batches(self, ctx: WorkerContext, position: dict[str, Any]) -> Iterator[tuple[Batch, dict]]:
        raise NotImplementedError

    def compute_loss(
        self, model: nn.Module, batch: Batch, ctx: WorkerContext
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def loss_weight(self, batch: Batch) -> float:
        """Default: every micro-batch weighs the same (right when all have equal counts)."""
        return 1.0

    def evaluate(self, model: nn.Module, ctx: WorkerContext) -> dict[str, float]:
        return {}

    def flops_per_token(self, model: nn.Module) -> float:
        return 0.0

    def export(self, model: nn.Module, directory: str, ctx: WorkerContext) -> None:
        model.save_pretrained(directory)

    def after_export(self, directory: str, ctx: WorkerContext) -> dict[str, Any]:
        return {}


# --- driver ---------------------------------------------------------------------------------


def fit(
    task: TrainTask, cfg: Any, run_dir: str, name: str, min_workers: int | None = None
) -> dict[str, Any]:
    """Run ``task`` with Ray Train and return the summary rank 0 wrote (``summary.json``).

    Checkpoints go to ``cfg.storage_path`` (or ``RUNDIR/checkpoints``) under ``name``: a rerun
    with the same ``run_dir`` resumes from the latest one. ``min_workers`` makes the run
    elastic (between it and ``cfg.workers``): Ray Train restarts the worker group when nodes
    come or go, and the workers resume from the latest checkpoint.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from cluster.resources import train_scaling_config

    run_dir = storage.absolute(run_dir)
    storage_path = cfg.storage_path or storage.join(run_dir, "checkpoints")
    ckpt_io.check_writable(storage_path)
    ckpt_io.check_writable(run_dir)
    trainer = TorchTrainer(
        train_loop_per_worker=_worker_loop,
        # Pickled here and unpickled only in the workers: Ray Train's controller would unpickle
        # a plain config too, importing torch and transformers on the start-up path (~3 s).
        train_loop_config={"payload": ray.cloudpickle.dumps((task, cfg, run_dir))},
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=train_scaling_config(cfg, min_workers),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage.absolute(storage_path),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        ),
    )
    with metrics_io.watch(run_dir, cfg.max_steps, name):  # drawn here, not in the workers
        trainer.fit()
    return json.loads(storage.read_text(storage.join(run_dir, "summary.json")))


# --- worker ---------------------------------------------------------------------------------


def _worker_loop(loop_config: dict[str, bytes]) -> None:
    import ray.train
    import ray.train.torch

    task: TrainTask
    task, cfg, run_dir = pickle.loads(loop_config["payload"])
    context = ray.train.get_context()
    ctx = WorkerContext(
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
        config=cfg,
        run_dir=run_dir,
    )
    if ctx.device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    _seed_everything(cfg.seed)  # identical initial weights on every rank
    raw_model = task.build_model(ctx)
    if cfg.activation_checkpointing:
        raw_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    raw_model.to(ctx.device)
    model = _wrap(raw_model, cfg, ctx)
    optimizer = build_optimizer(raw_model, cfg)
    scheduler = warmup_cosine(optimizer, cfg)

    state = {"step": 0, "position": task.initial_position(), "tokens": 0, "seconds": 0.0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # restores every rank's RNG state too
        with checkpoint.as_directory() as directory:
            state = ckpt_io.load(directory, raw_model, optimizer, scheduler, ctx.rank)
    else:
        _seed_everything(cfg.seed + 1000 * ctx.rank)  # e.g. dropout differs across ranks
        if ctx.is_main:
            metrics_io.reset(run_dir)

    peak = cfg.peak_flops or metrics_io.measure_peak_flops(ctx.device, _autocast_dtype(cfg, ctx))
    flops_per_token = task.flops_per_token(raw_model)
    log = metrics_io.MetricsLog(run_dir, start_step=state["step"]) if ctx.is_main else None
    if checkpoint is None and cfg.eval_every:  # the held-out figures training must improve on
        state["before"] = {f"{k}_before": v for k, v in _evaluate(model, task, cfg, ctx).items()}
    batches = task.batches(ctx, state["position"])
    window = metrics_io.Window()
    model.train()

    while state["step"] < cfg.max_steps:
        started = time.perf_counter()
        micro_batches = []
        for _ in range(cfg.grad_accum):
            batch, state["position"] = next(batches)
            micro_batches.append(batch)
        loss, tokens, extra = accumulate(task, model, micro_batches, ctx)
        grad_norm = _clip(raw_model, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        state["step"] += 1
        seconds = time.perf_counter() - started
        window.add(loss, tokens, seconds, extra)
        state["seconds"] += seconds

        evaluate = _should(state["step"], cfg.eval_every, cfg.max_steps)
        if evaluate or _should(state["step"], cfg.log_every, cfg.max_steps):
            row = _log_row(window, ctx, lr, grad_norm, peak, flops_per_token)
            state["tokens"] += int(row["tokens"])
            if evaluate:
                row.update(_evaluate(model, task, cfg, ctx))
            row["step"], row["time"] = state["step"], round(time.time(), 3)  # wall clock
            if log is not None:
                log.write(row)
        if _should(state["step"], cfg.checkpoint_every, cfg.max_steps):
            _save_and_report(raw_model, optimizer, scheduler, state, ctx, task)

    _export(raw_model, task, ctx, state)


def accumulate(
    task: TrainTask, model: nn.Module, micro_batches: list[Batch], ctx: WorkerContext
) -> tuple[float, int, dict[str, float]]:
    """Forward and backward of one optimizer step's micro-batches (gradients accumulate).

    Micro-batch ``i``'s mean loss is scaled by ``w_i · world / W``, where ``w_i`` is its
    :meth:`TrainTask.loss_weight` and ``W`` the sum over the step's micro-batches on all ranks
    (one all-reduce): after DDP/FSDP average over ranks, the gradient is that of the step's
    global mean. Returns this rank's weighted mean loss, its tokens and its metrics.
    """
    cfg = ctx.config
    weights = [float(task.loss_weight(b)) for b in micro_batches]
    total = ctx.all_sum({"weight": sum(weights)})["weight"]
    loss_sum, tokens, extra = 0.0, 0, {}
    for micro, (batch, weight) in enumerate(zip(micro_batches, weights, strict=True)):
        batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
        with _no_sync(model, cfg, last=micro == len(micro_batches) - 1), _autocast(cfg, ctx):
            loss, batch_metrics = task.compute_loss(model, batch, ctx)
            (loss * (weight * ctx.world_size / max(total, 1e-12))).backward()
        loss_sum += float(loss.detach()) * weight
        tokens += int(batch_metrics.pop("tokens", 0))
        for key, value in batch_metrics.items():
            extra[key] = extra.get(key, 0.0) + float(value) / len(micro_batches)
    return loss_sum / max(sum(weights), 1e-12), tokens, extra


def _evaluate(model: nn.Module, task: TrainTask, cfg: Any, ctx: WorkerContext) -> dict[str, float]:
    model.eval()
    with torch.no_grad(), _autocast(cfg, ctx):
        out = task.evaluate(model, ctx)
    model.train()
    return out


def _wrap(model: nn.Module, cfg: Any, ctx: WorkerContext) -> nn.Module:
    """DDP (default) or FSDP2 (each decoder layer, then the root) over the process group."""
    if ctx.world_size == 1 and cfg.strategy == "ddp":
        return model
    if cfg.strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        dtype = _autocast_dtype(cfg, ctx)
        policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        kwargs = {"mp_policy": policy} if dtype != torch.float32 else {}
        for layer in decoder_layers(model):
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The blocks FSDP shards one by one: the modules whose class the model names in
    ``_no_split_modules`` (LlamaDecoderLayer, Qwen2DecoderLayer, GPT2Block, ...)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names and m is not model]


@contextlib.contextmanager
def _no_sync(model: nn.Module, cfg: Any, last: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-step of an accumulation."""
    if last or cfg.grad_accum == 1:
        yield
    elif hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def _autocast_dtype(cfg: Any, ctx: WorkerContext) -> torch.dtype:
    if cfg.precision == "bf16" or (cfg.precision == "auto" and ctx.device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def _autocast(cfg: Any, ctx: WorkerContext) -> contextlib.AbstractContextManager:
    dtype = _autocast_dtype(cfg, ctx)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(ctx.device.type, dtype=dtype)


def _clip(model: nn.Module, max_norm: float) -> float:
    """Clip the global grad norm (DTensor-aware for FSDP2) and return it before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def _should(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def _log_row(
    window: metrics_io.Window,
    ctx: WorkerContext,
    lr: float,
    grad_norm: float,
    peak: float,
    flops_per_token: float,
) -> dict[str, Any]:
    local = window.flush()
    summed = ctx.all_sum({"tokens": local.pop("tokens"), "peak": peak})
    seconds = ctx.all_mean({"seconds": local.pop("seconds")})["seconds"]
    row: dict[str, Any] = ctx.all_mean(local)
    tokens_per_s = summed["tokens"] / max(seconds, 1e-9)
    row.update(
        lr=lr,
        grad_norm=grad_norm,
        tokens=summed["tokens"],
        tokens_per_s=tokens_per_s,
        workers=ctx.world_size,  # an elastic run shows its resizes here
        mfu=metrics_io.mfu(tokens_per_s, flops_per_token, summed["peak"]),
    )
    return row


def _save_and_report(raw_model, optimizer, scheduler, state, ctx: WorkerContext, task) -> None:
    """Every rank joins the state-dict gather; rank 0 writes; every rank reports."""
    import ray.train

    full = ckpt_io.gather(raw_model, optimizer)
    rng = ckpt_io.gather_rng(ctx.world_size)
    metrics = {"step": state["step"]}
    if not ctx.is_main:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix=f"natal-{task.name}-ckpt-") as directory:
        ckpt_io.save(directory, raw_model, full, scheduler, state, rng)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def _export(raw_model, task: TrainTask, ctx: WorkerContext, state: dict[str, Any]) -> None:
    full = ckpt_io.gather(raw_model, optimizer=None)
    if not ctx.is_main:
        return
    final = storage.join(ctx.run_dir, "final")
    with tempfile.TemporaryDirectory(prefix=f"natal-{task.name}-final-") as directory:
        model = ckpt_io.unsharded_copy(raw_model, full["model"])
        task.export(model, directory, ctx)
        ckpt_io.upload_dir(directory, final)
    summary = {
        "steps": state["step"],
        "tokens": state["tokens"],
        "train_seconds": round(state["seconds"], 2),
        "final": final,
        "workers": ctx.world_size,
        **state.get("before", {}),
        **metrics_io.summarize(ctx.run_dir),
        **task.after_export(final, ctx),
    }
    metrics_io.plot(ctx.run_dir)
    storage.write_text(storage.join(ctx.run_dir, "summary.json"), json.dumps(summary, indent=2))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
