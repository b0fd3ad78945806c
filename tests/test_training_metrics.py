"""FLOPs/MFU math, the metrics log and its resume behaviour, the PNG (training/metrics.py)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaForCausalLM

from pipelines.training import metrics
from pipelines.training.presets import llama_config


def test_flops_per_token_is_six_times_the_matmul_parameters_plus_attention() -> None:
    config = llama_config("tiny", 2048)
    model = LlamaForCausalLM(config)
    matmul = sum(
        p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "embed_tokens" not in n
    )
    attention = 12 * config.num_hidden_layers * config.hidden_size * 256
    assert metrics.flops_per_token(model, 256) == pytest.approx(6 * matmul + attention)


def test_flops_per_token_of_other_architectures_and_heads() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaForSequenceClassification

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=500))
    blocks = 2 * (64 * 3 * 64 + 64 * 64 + 2 * 64 * 256)  # c_attn, c_proj, the MLP (Conv1D)
    expected = 6 * (blocks + 500 * 64) + 12 * 2 * 64 * 128  # + the tied LM head
    assert metrics.flops_per_token(gpt2, 128) == pytest.approx(expected)
    config = llama_config("tiny", 2048)
    causal, scorer = LlamaForCausalLM(config), LlamaForSequenceClassification(config)
    head = config.hidden_size * config.vocab_size  # a reward model has no vocabulary head
    gap = metrics.flops_per_token(causal, 256) - metrics.flops_per_token(scorer, 256)
    assert gap == pytest.approx(6 * (head - config.hidden_size * config.num_labels))


def test_mfu() -> None:
    assert metrics.mfu(1000.0, 6e6, 12e9) == pytest.approx(0.5)
    assert metrics.mfu(1000.0, 6e6, 0.0) == 0.0


def test_peak_flops_probe_measures_something_plausible() -> None:
    peak = metrics.measure_peak_flops(torch.device("cpu"))
    assert 1e8 < peak < 1e14


def test_window_means_and_resets() -> None:
    window = metrics.Window()
    window.add(2.0, 100, 0.5, {"acc": 1.0})
    window.add(4.0, 300, 1.5, {"acc": 0.0})
    assert window.flush() == {"loss": 3.0, "acc": 0.5, "tokens": 400, "seconds": 2.0}
    assert window.flush()["tokens"] == 0


def test_log_drops_lines_after_the_resumed_step_and_plots(tmp_path) -> None:
    run = str(tmp_path)
    log = metrics.MetricsLog(run, start_step=0)
    for step in range(1, 6):
        row = {"step": step, "loss": 5.0 - step * 0.1, "tokens_per_s": 10.0, "mfu": 0.1}
        if step % 2 == 0:
            row["val_loss"] = 4.0
        log.write(row)
    resumed = metrics.MetricsLog(run, start_step=3)  # the checkpoint was at step 3
    resumed.write({"step": 4, "loss": 1.0, "tokens_per_s": 20.0, "mfu": 0.2, "time": 1.7e9 + 0.25})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["loss"] == 1.0 and rows[-1]["time"] == 1.7e9 + 0.25  # wall clock: unrounded
    summary = metrics.summarize(run)
    assert summary["first_loss"] == pytest.approx(4.9) and summary["final_loss"] == 1.0
    assert summary["val_loss"] == 4.0
    png = metrics.plot(run)
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png
    metrics.reset(run)
    assert metrics.read(run) == []
