"""Warmup + cosine schedule and AdamW parameter groups (pipelines/training/optim.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from pipelines.training.optim import build_optimizer, lr_at, warmup_cosine

CFG = SimpleNamespace(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110, weight_decay=0.1)


def test_warmup_is_linear_then_cosine_reaches_min_lr() -> None:
    lrs = [lr_at(s, CFG.lr, CFG.min_lr, CFG.warmup_steps, CFG.max_steps) for s in range(111)]
    assert lrs[0] == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak: step 0 already learns
    assert lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert lrs[60] == pytest.approx((1e-3 + 1e-4) / 2)  # half-way through the decay
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[110] == pytest.approx(1e-4)
    assert lr_at(500, CFG.lr, CFG.min_lr, CFG.warmup_steps, CFG.max_steps) == pytest.approx(1e-4)


def test_no_warmup_starts_at_peak() -> None:
    assert lr_at(0, 1.0, 0.0, 0, 100) == pytest.approx(1.0)
    assert lr_at(50, 1.0, 0.0, 0, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_scheduler_follows_lr_at_and_decay_skips_vectors() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    cfg = SimpleNamespace(**vars(CFG), betas=(0.9, 0.95))
    optimizer = build_optimizer(model, cfg)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert [p.ndim for p in decayed["params"]] == [2]
    assert sorted(p.ndim for p in plain["params"]) == [1, 1, 1]
    scheduler = warmup_cosine(optimizer, cfg)
    seen = []
    for _ in range(30):
        seen.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    expected = [lr_at(s, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps) for s in range(30)]
    assert seen == pytest.approx(expected)
