"""Model presets → ``LlamaConfig``: ``tiny`` for CPU and CI, ``small`` ≈ 125M, ``1b``, ``7b``."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig

from cluster.config.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    # ~1.3M parameters + embeddings: trains visibly in minutes on 2 CPU cores.
    "tiny": dict(
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
    ),
    # GPT-2 small's shape (~125M with a 32k vocabulary).
    "small": dict(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=2048,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
    ),
    # Llama-2-7B's shape.
    "7b": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
    ),
}


def llama_config(
    preset: str,
    vocab_size: int,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    max_seq_len: int | None = None,
) -> LlamaConfig:
    """The preset's shape with the tokenizer's vocabulary (rounded up to a multiple of 64)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r} (known: {', '.join(PRESETS)})")
    shape = dict(PRESETS[preset])
    if max_seq_len is not None:
        shape["max_position_embeddings"] = max_seq_len
    return LlamaConfig(
        vocab_size=-(-vocab_size // 64) * 64,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        **shape,
    )
