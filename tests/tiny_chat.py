"""A tiny chat model for the SFT / reward / DPO tests: natal's own tokenizer (with its chat
template), trained locally on a few KB, and a random-init Llama of ~0.1M parameters."""

from __future__ import annotations

from pathlib import Path

TEXT = """\
What is two plus three? The answer is 5. What is seven minus four? The answer is 3.
How many legs does a cat have? Four. Tell me a colour: blue, green, red, yellow.
The quick brown fox jumps over the lazy dog. Rain fell on the quiet town at night.
Please answer the question with the number. I do not know. Sorry, I cannot help with that.
Numbers 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 and words one two three.
"""


def build_tokenizer(vocab_size: int = 400):
    from cluster.config import TokenizerConfig
    from pipelines.pretrain.bpe import train_tokenizer

    return train_tokenizer([TEXT] * 30, TokenizerConfig(vocab_size=vocab_size))


def build_chat_model(out_dir: str | Path, tokenizer=None, hidden: int = 64, seed: int = 0) -> str:
    """Write a random-init 2-layer LlamaForCausalLM and natal's tokenizer to ``out_dir``."""
    from tiny_model import build_tiny_model

    tokenizer = tokenizer or build_tokenizer()
    model = build_tiny_model(
        out_dir, seed=seed, hidden_size=hidden, tokenizer=tokenizer, num_heads=4, kv_heads=4
    )
    return str(model)


CHATML = Path(__file__).parent / "chat_templates" / "chatml_qwen2.jinja"


def build_qwen2_chat_model(out_dir: str | Path, template: bool = False) -> str:
    """A random-init Qwen2ForCausalLM (head_dim 64, as vLLM's CPU attention needs) with
    ChatML special tokens: a base model without a chat template, or with the stock ChatML one
    (``template``), the way a user's own model arrives."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from pipelines.pretrain.bpe import save_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML.read_text() if template else None
    save_tokenizer(tokenizer, str(out_dir))
    config = Qwen2Config(  # a padded vocabulary, as real models have (Qwen2's adds a token)
        vocab_size=len(tokenizer) + 14, hidden_size=128, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=256, num_hidden_layers=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out_dir)
    return str(out_dir)
