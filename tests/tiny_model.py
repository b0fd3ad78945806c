"""A tiny Llama + natal's byte-level BPE tokenizer (chat template included), built locally.

Serving, rating and RLHF tests need a real Hugging Face model directory that vLLM loads; this
is the smallest one that exercises the same code paths as a trained natal model.
"""

from __future__ import annotations

from pathlib import Path

_TEXT = """\
The quick brown fox jumps over the lazy dog. A language model predicts the next token.
Ray schedules tasks and actors across a cluster; Serve exposes deployments over HTTP.
Rain fell on the quiet town, and the river carried leaves past the old mill.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Symbols: < > & " ' / \\ { } [ ] ( ) ; : , .
def add(a, b):\n    return a + b\nprint(add(2, 3))
Questions and answers: What is the capital of France? Paris. How many legs has a cat? Four.
"""


def build_tiny_model(
    out_dir: str | Path,
    vocab_size: int = 512,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 2,
    tokenizer=None,
    num_heads: int | None = None,
    kv_heads: int = 2,
) -> Path:
    """Write a random-init fp32 LlamaForCausalLM and its tokenizer to ``out_dir``.

    The defaults give ~0.36M parameters with head_dim 32, the smallest vLLM's CPU attention
    takes; benchmarks pass a larger ``hidden_size``/``num_layers``. ``tokenizer``: use this
    one instead of training one on the built-in text.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from cluster.config import TokenizerConfig
    from pipelines.pretrain.bpe import save_tokenizer, train_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # natal's own tokenizer: byte-level BPE, special tokens, the chat template with
    # {% generation %} blocks that SFT, reward models and the RLHF loop rely on
    fast = tokenizer or train_tokenizer(
        [_TEXT] * 20, TokenizerConfig(vocab_size=vocab_size, min_frequency=1)
    )
    save_tokenizer(fast, str(out))

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads or hidden_size // 32,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    LlamaForCausalLM(config).save_pretrained(out)
    return out
