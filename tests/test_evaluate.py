"""natal eval's pieces: win rate, policy comparison judged by a reward model, perplexity."""

import json
import math

import pytest
from tiny_model import build_tiny_model

from pipelines.rl import evaluate


def test_win_rate_counts_ties_half():
    assert evaluate.win_rate([1.0, 0.0, 2.0, 5.0], [0.0, 1.0, 2.0, 4.0]) == pytest.approx(0.625)
    assert math.isnan(evaluate.win_rate([], []))


def test_identical_policies_tie_under_any_reward_model(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    policy = build_tiny_model(tmp_path / "policy")
    reward_dir = tmp_path / "rm"
    config = AutoConfig.from_pretrained(policy, num_labels=1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(reward_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (reward_dir / name).write_bytes((policy / name).read_bytes())
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(3)))
    result = evaluate.compare_policies(
        str(policy), str(policy), str(reward_dir), str(prompts), limit=2, max_new_tokens=6
    )
    assert result["prompts"] == 2  # the limit holds
    assert result["win_rate"] == 0.5  # same answers, same scores: every prompt a tie
    assert result["reward_policy"] == result["reward_baseline"]
    assert all(ex["policy"] == ex["baseline"] for ex in result["examples"])


def test_perplexity_on_validation_shards(pretrain_shards, pretrain_tokenizer, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    vocab = len(AutoTokenizer.from_pretrained(pretrain_tokenizer))
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=256,
        )
    )
    model.save_pretrained(tmp_path / "m")
    result = evaluate.perplexity(str(tmp_path / "m"), str(pretrain_shards), max_sequences=4)
    assert result["val_sequences"] == 4
    # a random model is close to uniform over the vocabulary
    assert result["val_ppl"] == pytest.approx(math.exp(result["val_loss"]))
    assert 0.5 * vocab < result["val_ppl"] < 2 * vocab
