"""Model presets → LlamaConfig (pipelines/training/presets.py)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from cluster.config.errors import ConfigError
from pipelines.training.presets import llama_config


def n_params(preset: str, vocab: int) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in LlamaForCausalLM(llama_config(preset, vocab)).parameters())


def test_preset_sizes() -> None:
    assert 1e6 < n_params("tiny", 8192) < 5e6  # a few M: CPU and CI
    assert 110e6 < n_params("small", 32000) < 140e6  # ≈125M
    assert 0.9e9 < n_params("1b", 32000) < 1.3e9
    assert 6.4e9 < n_params("7b", 32000) < 7.0e9


def test_vocab_rounded_up_and_special_ids_kept() -> None:
    cfg = llama_config("tiny", 1000, bos_token_id=1, eos_token_id=2, pad_token_id=0, max_seq_len=64)
    assert cfg.vocab_size == 1024
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (1, 2, 0)
    assert cfg.max_position_embeddings == 64
    assert cfg.hidden_size // cfg.num_attention_heads >= 32  # vLLM's CPU attention minimum


def test_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        llama_config("huge", 100)
