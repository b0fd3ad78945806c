"""``natal sft`` end to end on Ray Train, and the pieces it shares with reward and DPO."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_chat import build_chat_model

from cluster import cli
from cluster.commands.training_verbs import CHAT_FORMATS, PAIR_FORMATS
from cluster.config import load_config
from cluster.config.errors import InputError
from pipelines.posttrain import finetune, sft
from pipelines.posttrain.chat_data import CHAT_ADAPTERS
from pipelines.posttrain.preference_data import PREFERENCE_ADAPTERS


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> str:
    return build_chat_model(tmp_path_factory.mktemp("model"))


def turn(role, content):
    return {"role": role, "content": content}


def write_jsonl(path: Path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_cli_formats_are_the_adapters():
    assert CHAT_FORMATS == list(CHAT_ADAPTERS)
    assert PAIR_FORMATS == list(PREFERENCE_ADAPTERS)


def test_holdout_and_stream_positions_are_global():
    train, val = finetune.holdout(list(range(20)), 0.1, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(20))
    assert finetune.holdout([1], 0.5, seed=0) == ([1], [])
    items = list(range(10))
    one = finetune.stream(items, 4, rank=0, world=1, position={}, seed=3)
    seen = [x for _ in range(5) for x in next(one)[0]]
    assert sorted(seen[:10]) == items and sorted(seen[10:20]) == items  # epochs are permutations
    # Two ranks together consume the same sequence, and a resume continues it exactly.
    r0 = finetune.stream(items, 2, rank=0, world=2, position={}, seed=3)
    r1 = finetune.stream(items, 2, rank=1, world=2, position={}, seed=3)
    (a, pos), (b, _) = next(r0), next(r1)
    assert a + b == seen[:4] and pos == {"seen": 4}
    resumed = finetune.stream(items, 4, rank=0, world=1, position=pos, seed=3)
    assert next(resumed)[0] == seen[4:8]
    chunks = list(finetune.eval_chunks(list(range(7)), 2, rank=1, world=2, max_chunks=5))
    assert chunks == [[1, 3], [5]]


def test_prompt_split_puts_every_pair_of_a_prompt_on_one_side():
    from pipelines.posttrain.preference_data import make_pair

    pairs = [make_pair([turn("user", f"q{i % 10}")], f"good {i}", f"bad {i}") for i in range(40)]
    rest = finetune.PromptSplit(0.3, seed=1, held=False).take(pairs)
    held = finetune.PromptSplit(0.3, seed=1, held=True).take(pairs)
    assert sorted(rest + held, key=pairs.index) == pairs  # two sides, all of the pairs
    assert {p.prompt for p in rest}.isdisjoint({p.prompt for p in held})
    assert len({p.prompt for p in held}) == 3 and len(held) == 12
    with pytest.raises(InputError, match="judge_fraction=0.3: 1 preference prompts leave none"):
        finetune.PromptSplit(0.3, seed=1, held=True).take(pairs[:1])


def test_chat_template_flag_replaces_the_tokenizers_template(chat_model, tmp_path):
    template = Path(__file__).parent / "chat_templates" / "chatml_qwen2.jinja"
    for stage in ("sft", "reward", "dpo"):
        args = cli.build_parser().parse_args(
            [stage, "--model", chat_model, "--data", "x", "--output", "o"]
            + ["--chat-template", str(template)]
        )
        cfg = load_config(None, [], cli.config_values(args._command, args))
        assert getattr(cfg, stage).chat_template == str(template)
    tokenizer = finetune.load_tokenizer(chat_model, str(template))
    assert tokenizer.chat_template == template.read_text()
    assert finetune.load_tokenizer(chat_model).chat_template != template.read_text()
    with pytest.raises(InputError, match="--chat-template .*nope.jinja: no such file"):
        finetune.load_tokenizer(chat_model, str(tmp_path / "nope.jinja"))


@pytest.mark.parametrize("stage", ["sft", "reward", "dpo", "rlhf"])
def test_every_tuning_stage_takes_the_lora_and_checkpointing_flags(stage):
    inputs = (
        ["--policy", "m", "--prompts", "x"] if stage == "rlhf" else ["--model", "m", "--data", "x"]
    )
    args = cli.build_parser().parse_args(
        [stage, *inputs, "--output", "o", "--lora-r", "16"]
        + ["--lora-alpha", "32", "--lora-dropout", "0.05", "--lora-targets", "q_proj", "v_proj"]
    )
    section = getattr(load_config(None, [], cli.config_values(args._command, args)), stage)
    assert (section.lora_r, section.lora_alpha, section.lora_dropout) == (16, 32.0, 0.05)
    assert section.lora_targets == ["q_proj", "v_proj"]
    if stage != "rlhf":
        assert not section.activation_checkpointing  # not given: the config's value
        flag = [*inputs, "--output", "o", "--gradient-checkpointing"]
        args = cli.build_parser().parse_args([stage, *flag])
        section = getattr(load_config(None, [], cli.config_values(args._command, args)), stage)
        assert section.activation_checkpointing


def test_a_reward_model_as_policy_and_a_tokenizer_without_pad_are_handled(
    chat_model, tmp_path, capsys
):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    scorer = tmp_path / "rm"
    config = AutoConfig.from_pretrained(chat_model, num_labels=1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(scorer)
    with pytest.raises(InputError, match="a sequence classifier .*not a causal LM"):
        finetune.require_causal_lm(str(scorer))
    finetune.require_causal_lm(chat_model)  # a causal LM passes
    no_pad = tmp_path / "no-pad"
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(no_pad)
    shutil.copy(Path(chat_model) / "config.json", no_pad)
    loaded = finetune.load_tokenizer(str(no_pad))
    assert loaded.pad_token == loaded.eos_token is not None
    assert "no pad token: padding with eos" in capsys.readouterr().err


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused(chat_model, tmp_path):
    from transformers import AutoTokenizer

    mismatched = tmp_path / "mismatched"
    shutil.copytree(chat_model, mismatched)
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    tokenizer.add_tokens([f"extra{i}" for i in range(8)])
    tokenizer.save_pretrained(mismatched)
    with pytest.raises(InputError, match=r"tokenizer has \d+ tokens but the model's vocabulary"):
        finetune.load_tokenizer(str(mismatched))


def test_missing_data_is_one_line_error(chat_model, tmp_path, capsys):
    model = chat_model
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [turn("user", "only a question")]}])
    code = cli.main(["sft", "--model", model, "--data", path, "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "no usable conversations" in err and "no_assistant_turn" in err
    code = cli.main(["sft", "--model", str(tmp_path), "--data", path, "--output", str(tmp_path)])
    assert code == 2 and "not a Hugging Face model directory" in capsys.readouterr().err


@pytest.mark.ray
def test_sft_trains_on_conversations_end_to_end(ray_cluster, chat_model, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.chdir(Path(chat_model).parent)  # a relative model path, as `natal run` gives
    model = Path(chat_model).name
    records = [
        {"messages": [turn("user", f"Say the number {n}."), turn("assistant", f"{n}")]}
        for n in range(21)
        for _ in range(4)
    ]
    records += [
        {
            "messages": [
                turn("user", "Say the number 3."),
                turn("assistant", "3"),
                turn("user", "Say the number 4."),
                turn("assistant", "4"),
            ]
        },
        {"messages": [turn("user", "no answer here")]},
        {"messages": [turn("assistant", "out of order"), turn("user", "hi")]},
    ]
    data = write_jsonl(tmp_path / "chats.jsonl", records)
    dolly = write_jsonl(
        tmp_path / "dolly.jsonl", [{"instruction": "Say 5.", "context": "", "response": "5"}]
    )
    cfg = load_config(
        None,
        [
            "sft.log_every=10",
            "sft.eval_every=0",
            "sft.checkpoint_every=20",
            "sft.micro_batch=8",
            "sft.max_seq_len=64",
            "sft.lr=3e-3",
            "sft.warmup_steps=2",
            "sft.sample_tokens=4",
            "sft.sample_prompt=Say the number 7.",
        ],
        {"sft.max_steps": 40},
    )
    output = str(tmp_path / "run")
    stats = sft.run(cfg, model, [data, dolly], output)

    assert stats["breakdown"]["skipped_by_reason"] == {
        "no_assistant_turn": 1,
        "roles_out_of_order": 1,
    }
    assert stats["breakdown"]["files_by_format"] == {"messages": 1, "dolly": 1}
    assert stats["counts"]["conversations"] == 86
    assert stats["counts"]["train_rows"] < stats["counts"]["train_conversations"]  # packed
    assert stats["steps"] == 40
    assert stats["final_loss"] < stats["first_loss"] * 0.5
    assert stats["val_loss"] < 2.0
    assert stats["answer_after"].isdigit()  # it answers in the taught form, then stops
    for name in ("metrics.jsonl", "loss.png", "config.yaml", "stats.json", "summary.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert list((tmp_path / "run" / "checkpoints" / "sft").glob("checkpoint_*"))
    final = tmp_path / "run" / "final"
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert tokenizer.chat_template and "generation" in tokenizer.chat_template
    assert AutoModelForCausalLM.from_pretrained(final).config.vocab_size == len(tokenizer)


@pytest.mark.ray
def test_a_qwen2_base_model_gets_through_lora_sft_with_a_stock_chatml_template(
    ray_cluster, tmp_path
):
    """Bring your own model: another architecture, no chat template of its own, ChatML given
    by --chat-template, LoRA adapters; the export is merged, keeps the architecture and the
    template, and the adapter lies beside it."""
    import torch
    from tiny_chat import CHATML, build_qwen2_chat_model
    from transformers import AutoConfig, AutoTokenizer, Qwen2ForCausalLM

    model_dir = build_qwen2_chat_model(tmp_path / "qwen2-base")
    records = [
        {"messages": [turn("user", f"Say the number {n}."), turn("assistant", f"{n}")]}
        for n in range(21)
        for _ in range(3)
    ]
    data = write_jsonl(tmp_path / "chats.jsonl", records)
    overrides = [
        "sft.eval_every=0",
        "sft.checkpoint_every=0",
        "sft.micro_batch=8",
        "sft.log_every=2",
    ]
    overrides += ["sft.max_seq_len=256", "sft.lr=5e-3", "sft.warmup_steps=2", "sft.sample_tokens=0"]
    flags = {"sft.max_steps": 16, "sft.chat_template": str(CHATML), "sft.lora_r": 16}
    flags["sft.activation_checkpointing"] = True  # with frozen base weights too
    cfg = load_config(None, overrides, flags)
    stats = sft.run(cfg, str(model_dir), [data], str(tmp_path / "run"))
    assert stats["final_loss"] < stats["first_loss"] * 0.9
    assert 0 < stats["mfu"] < 1  # FLOPs of this architecture, not Llama's formula
    final = tmp_path / "run" / "final"
    assert AutoConfig.from_pretrained(final).model_type == "qwen2"
    assert AutoTokenizer.from_pretrained(final).chat_template == CHATML.read_text()
    adapter = json.loads((tmp_path / "run" / "final-adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16
    merged = Qwen2ForCausalLM.from_pretrained(final).state_dict()
    base = Qwen2ForCausalLM.from_pretrained(model_dir).state_dict()
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(k.endswith("_proj.weight") for k in changed)  # adapters, merged
