"""Checkpoint round trip: a restored run continues exactly (pipelines/training/checkpoint.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from cluster.config.errors import ConfigError
from pipelines.training import checkpoint
from pipelines.training.optim import build_optimizer, warmup_cosine
from pipelines.training.presets import llama_config

CFG = SimpleNamespace(
    lr=1e-2, min_lr=1e-3, warmup_steps=2, max_steps=10, weight_decay=0.1, betas=(0.9, 0.95)
)


def fresh():
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config("tiny", 256, max_seq_len=64))
    optimizer = build_optimizer(model, CFG)
    return model, optimizer, warmup_cosine(optimizer, CFG)


def step(model, optimizer, scheduler, ids) -> float:
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()
    return float(loss)


def test_save_load_continues_bit_for_bit(tmp_path) -> None:
    data = torch.randint(0, 256, (6, 4, 32), generator=torch.Generator().manual_seed(1))
    model, optimizer, scheduler = fresh()
    for i in range(3):
        step(model, optimizer, scheduler, data[i])
    state = {"step": 3, "position": {"samples": 12}, "tokens": 384, "seconds": 1.0}
    full = checkpoint.gather(model, optimizer)
    torch.manual_seed(123)
    checkpoint.save(str(tmp_path), model, full, scheduler, state, checkpoint.gather_rng(1))
    expected = [step(model, optimizer, scheduler, data[i]) for i in range(3, 6)]
    draw = torch.rand(3)

    model2, optimizer2, scheduler2 = fresh()
    restored = checkpoint.load(str(tmp_path), model2, optimizer2, scheduler2, rank=0)
    assert restored == json.loads(json.dumps(state))
    assert torch.equal(torch.rand(3), draw)  # the RNG state came back too
    assert [step(model2, optimizer2, scheduler2, data[i]) for i in range(3, 6)] == expected
    # the checkpoint is a loadable Hugging Face model on its own
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.config.vocab_size == 256


def test_unwritable_path_fails_before_training(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="not writable"):
        checkpoint.check_writable(str(blocker / "checkpoints"))
    checkpoint.check_writable(str(tmp_path / "ok"))  # creates it
    assert (tmp_path / "ok").is_dir() and not list((tmp_path / "ok").iterdir())
