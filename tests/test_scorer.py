"""The reward actor's rules: called with the prompt row's fields, bad signatures refused."""

from __future__ import annotations

import math
import sys
import types

import pytest

from actors.scorer import RewardScorer, load_reward_fn
from cluster.config.errors import ConfigError


@pytest.fixture(autouse=True)
def rules_module(monkeypatch):
    """A module of rules, importable as ``user_rules`` (as a user's PYTHONPATH module is)."""
    module = types.ModuleType("user_rules")

    def exact(prompt, response, answer):
        return float(response.strip() == answer)

    def hinted(prompt, response, answer="", hint=None):
        return float(hint is not None) + float(answer in response)

    def everything(prompt, response, **fields):
        return float(len(fields))

    def two(prompt, response):
        return float(len(response))

    def one(response):
        return 0.0

    for fn in (exact, hinted, everything, two, one):
        setattr(module, fn.__name__, fn)
    monkeypatch.setitem(sys.modules, "user_rules", module)


def scores(rule: str, prompts: list, responses: list[str]) -> dict:
    return RewardScorer(reward_fns=[f"user_rules:{rule}"]).score(prompts, responses)


def test_rules_get_the_fields_they_name_from_the_prompt_row():
    rows = [{"prompt": "2+2?", "messages": [], "answer": "4", "source": "gsm8k"}] * 2
    assert scores("exact", rows, ["4", "5"])["scores"] == [1.0, 0.0]
    assert scores("hinted", rows, ["it is 4", "no"])["scores"] == [1.0, 0.0]  # defaults hold
    assert scores("everything", rows, ["x", "y"])["scores"] == [2.0, 2.0]  # answer, source


def test_two_argument_rules_and_plain_string_prompts_keep_working():
    assert scores("two", ["a prompt"], ["four"])["scores"] == [4.0]
    assert scores("everything", ["a prompt"], ["x"])["scores"] == [0.0]


def test_a_field_the_row_lacks_is_counted_not_fatal():
    out = scores("exact", [{"prompt": "p", "messages": []}, "plain"], ["4", "4"])
    assert all(math.isnan(v) for v in out["scores"])
    assert out["errors"] == {"user_rules:exact row lacks field 'answer'": 2}


def test_a_rule_with_a_wrong_signature_is_refused_at_start_naming_it():
    with pytest.raises(ConfigError, match=r"user_rules:one.*\(prompt, response\)"):
        load_reward_fn("user_rules:one")


def test_the_reward_model_reads_the_whole_conversation(tmp_path):
    """The same last question and answer after different earlier turns: different scores."""
    from tiny_model import build_tiny_model

    scorer = RewardScorer(reward_model=str(build_tiny_model(tmp_path / "rm")))
    last = {"role": "user", "content": "and then?"}
    rows = [
        {"prompt": "and then?", "messages": [last]},
        {"prompt": "and then?", "messages": [
            {"role": "user", "content": "Tell me about json."},
            {"role": "assistant", "content": "It reads and writes JSON text."},
            last,
        ]},
    ]  # fmt: skip
    out = scorer.score(rows, ["It stops.", "It stops."])
    assert not out["errors"] and out["scores"][0] != pytest.approx(out["scores"][1], abs=1e-6)
    assert scorer.score(["and then?"], ["It stops."])["scores"] == pytest.approx(out["scores"][:1])


def test_a_reward_model_whose_template_cannot_frame_an_answer_is_refused_naming_it(tmp_path):
    from tiny_model import build_tiny_model
    from transformers import AutoTokenizer

    model = build_tiny_model(tmp_path / "rm")
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = None  # a base model's tokenizer: no chat template at all
    tokenizer.save_pretrained(model)
    (model / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ConfigError, match=f"reward model {model}: .*no chat template"):
        RewardScorer(reward_model=str(model))
