"""What the benchmarks share: a fresh natal tokenizer + Llama preset, saved as an HF directory."""

from __future__ import annotations

from pathlib import Path


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
