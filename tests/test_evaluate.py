"""natal eval's pieces: win rate and its interval, judges, policy comparison, perplexity."""

import json
import math

import numpy as np
import pytest
from tiny_model import build_tiny_model

from cluster.config import load_config
from cluster.config.errors import InputError
from pipelines.rl import evaluate


def test_win_rate_counts_ties_half_and_leaves_unscored_prompts_out():
    assert evaluate.win_rate([1.0, 0.0, 2.0, 5.0], [0.0, 1.0, 2.0, 4.0]) == pytest.approx(0.625)
    assert evaluate.outcomes([1.0, math.nan, 0.0], [0.0, 1.0, math.nan]) == [1.0]
    assert math.isnan(evaluate.win_rate([], []))


def test_bootstrap_interval_brackets_the_win_rate_and_narrows_with_more_prompts():
    rng = np.random.default_rng(1)
    small = list(rng.choice([0.0, 1.0], 16))
    large = list(rng.choice([0.0, 1.0], 400))
    for results in (small, large):
        low, high = evaluate.bootstrap_interval(results)
        assert low <= float(np.mean(results)) <= high
    (low16, high16), (low400, high400) = map(evaluate.bootstrap_interval, (small, large))
    # the normal approximation's half width, 1.96·sqrt(p(1-p)/n), within sampling error
    assert (high400 - low400) / 2 == pytest.approx(1.96 * math.sqrt(0.25 / 400), rel=0.15)
    assert high16 - low16 > 3 * (high400 - low400)
    assert evaluate.bootstrap_interval([1.0] * 10) == (1.0, 1.0)  # no spread, no width
    assert evaluate.bootstrap_interval(small) == evaluate.bootstrap_interval(small)  # seeded
    assert all(math.isnan(x) for x in evaluate.bootstrap_interval([]))


def reward_model_of(policy, directory):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(policy, num_labels=1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).write_bytes((policy / name).read_bytes())
    return directory


def test_policies_are_compared_by_every_judge_on_the_prompt_rows(tmp_path):
    policy = build_tiny_model(tmp_path / "policy")
    other = build_tiny_model(tmp_path / "other", seed=5)  # answers "predicts" to question 1
    reward_dir = reward_model_of(policy, tmp_path / "rm")
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": f"question {i}", "target": "predicts"} for i in range(3)]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    judges = [
        evaluate.Judge("model", "a reward model", False, str(reward_dir)),
        evaluate.Judge("rule", "a rule of the row", True, None, ("toy_rewards:says_target",)),
    ]
    same = evaluate.compare_policies(
        str(policy), str(policy), judges, str(prompts), limit=2, max_new_tokens=6
    )
    assert same["prompts"] == 2  # the limit holds
    for verdict in same["judges"].values():  # same answers, same scores: every prompt a tie
        assert verdict["win_rate"] == 0.5 and verdict["scored"] == 2
        assert verdict["reward_policy"] == verdict["reward_baseline"]
    assert same["judges"]["rule"]["independent"] and not same["judges"]["model"]["independent"]
    assert all(ex["policy"] == ex["baseline"] for ex in same["examples"])
    differ = evaluate.compare_policies(
        str(other), str(policy), judges, str(prompts), limit=3, max_new_tokens=6
    )
    assert [ex["policy"] != ex["baseline"] for ex in differ["examples"]] == [False, True, False]
    rule = differ["judges"]["rule"]  # the rule read each row's target: one win, two ties
    assert rule["win_rate"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert rule["reward_policy"] == pytest.approx(1 / 3) and rule["reward_baseline"] == 0
    model = differ["judges"]["model"]
    scores = [ex["scores"]["model"] for ex in differ["examples"]]
    expected = evaluate.win_rate([s["policy"] for s in scores], [s["baseline"] for s in scores])
    assert model["win_rate"] == expected
    low, high = model["win_rate_ci95"]
    assert low <= model["win_rate"] <= high


def test_lifecycle_judges_name_the_training_reward_and_the_independent_ones(tmp_path):
    cfg = load_config(None, ["lifecycle.judge_fn=toy_rewards:says_target"])
    judges = evaluate.lifecycle_judges(cfg, tmp_path)
    assert [(j.name, j.independent) for j in judges] == [
        ("training_reward", False),
        ("judge_rule", True),
    ]
    assert judges[0].reward_model == str(tmp_path / "reward" / "final")
    assert "not independent" in judges[0].label
    (tmp_path / "judge" / "final").mkdir(parents=True)
    (tmp_path / "judge" / "final" / "config.json").write_text("{}")
    cfg = load_config(None, ["rlhf.reward_fns=[toy_rewards:flaky]", "lifecycle.judge_fn=null"])
    judges = evaluate.lifecycle_judges(cfg, tmp_path)
    assert judges[0].reward_model is None and judges[0].reward_fns == ("toy_rewards:flaky",)
    assert [j.name for j in judges] == ["training_reward", "judge_model"]


def test_a_run_without_held_out_prompts_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="held out no prompts.*--prompts"):
        evaluate.heldout_prompts(tmp_path)
    (tmp_path / "rlhf").mkdir()
    (tmp_path / "rlhf" / "heldout_prompts.jsonl").write_text("")
    with pytest.raises(InputError, match="heldout_fraction=0"):
        evaluate.heldout_prompts(tmp_path)


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
