"""AdamW with decoupled weight decay on matrices only, and a warmup + cosine learning rate."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to min_lr."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cfg: Any) -> torch.optim.AdamW:
    """AdamW; norms, biases and other 1-D parameters get no weight decay (GPT-2/Llama practice)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def warmup_cosine(optimizer: torch.optim.Optimizer, cfg: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler whose state (last step) goes into the checkpoint."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_at(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps) / cfg.lr,
    )
