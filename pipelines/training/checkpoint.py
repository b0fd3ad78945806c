"""Checkpoints in Hugging Face format plus the training state, and the final export.

A checkpoint directory holds ``config.json`` + ``model.safetensors`` (loadable as a model on
its own), ``optimizer.pt`` (full, parameter-name keyed: it loads into DDP or FSDP2 at any
world size), ``scheduler.pt``, ``trainer_state.json`` (step, data position, tokens seen) and
``rng.pt`` (every rank's RNG state).
"""

from __future__ import annotations

import json
import os
import posixpath
import random
import shutil
import uuid
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from cluster.config.errors import ConfigError
from pipelines.data import storage

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def check_writable(uri: str) -> None:
    """Fail before training, not at the first checkpoint, when ``uri`` cannot be written."""
    probe = storage.join(uri, f".natal-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        storage.ensure_dir(uri)
        storage.write_text(probe, "ok\n")
        fs, path = storage.filesystem(probe)
        fs.rm(path)
    except Exception as exc:
        raise ConfigError(f"{uri}: not writable ({type(exc).__name__}: {exc})") from None


def gather(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Full (unsharded) model and optimizer state on rank 0's CPU; every rank must call it."""
    if not dist.is_initialized():
        full = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
        if optimizer is not None:
            full["optimizer"] = get_optimizer_state_dict(model, optimizer)
        return full
    full = {"model": get_model_state_dict(model, options=_FULL)}
    if optimizer is not None:
        full["optimizer"] = get_optimizer_state_dict(model, optimizer, options=_FULL)
    return full


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_rng(world_size: int) -> list[dict[str, Any]]:
    """Every rank's RNG state (a list indexed by rank), collected on every rank."""
    if world_size == 1 or not dist.is_initialized():
        return [rng_state()]
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, rng_state())
    return states


def unsharded_copy(model: nn.Module, full_state: dict[str, torch.Tensor]) -> nn.Module:
    """A plain CPU module with the full weights: the model itself unless FSDP sharded it."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        return model
    plain = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))
    with torch.device("cpu"):
        copy = plain(model.config)
    copy.load_state_dict(full_state)
    return copy


def save(
    directory: str,
    model: nn.Module,
    full: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    rng: list[dict[str, Any]],
) -> None:
    """Write one checkpoint into a local directory (rank 0)."""
    unsharded_copy(model, full["model"]).save_pretrained(directory)
    torch.save(full["optimizer"], os.path.join(directory, "optimizer.pt"))
    torch.save(scheduler.state_dict(), os.path.join(directory, "scheduler.pt"))
    torch.save(rng, os.path.join(directory, "rng.pt"))
    with open(os.path.join(directory, "trainer_state.json"), "w") as fh:
        json.dump(state, fh, indent=2)


def load(
    directory: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rank: int,
) -> dict[str, Any]:
    """Restore a checkpoint into the (possibly wrapped or sharded) model on every rank."""
    weights = load_file(os.path.join(directory, "model.safetensors"))
    optim_state = torch.load(os.path.join(directory, "optimizer.pt"), weights_only=False)
    options = StateDictOptions(full_state_dict=True)
    if dist.is_initialized():
        set_model_state_dict(model, weights, options=options)
        set_optimizer_state_dict(model, optimizer, optim_state, options=options)
    else:
        model.load_state_dict(weights)
        set_optimizer_state_dict(model, optimizer, optim_state)
    scheduler.load_state_dict(torch.load(os.path.join(directory, "scheduler.pt")))
    rngs = torch.load(os.path.join(directory, "rng.pt"), weights_only=False)
    if rank < len(rngs):
        set_rng_state(rngs[rank])
    with open(os.path.join(directory, "trainer_state.json")) as fh:
        return json.load(fh)


def upload_dir(local_dir: str, uri: str) -> None:
    """Replace ``uri`` (local path or fsspec URL) with the files of ``local_dir``."""
    storage.remove_tree(uri)
    if "://" not in uri:
        shutil.copytree(local_dir, uri)
        return
    fs, path = storage.filesystem(uri)
    for root, _, files in os.walk(local_dir):
        for name in files:
            local = os.path.join(root, name)
            relative = os.path.relpath(local, local_dir).replace(os.sep, "/")
            fs.put_file(local, posixpath.join(path, relative))
