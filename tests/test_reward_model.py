"""``natal reward``: a learnable preference reaches high held-out accuracy; hh-rlhf end to end."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
import torch
from tiny_chat import build_chat_model

from cluster import cli
from cluster.config import load_config
from pipelines.data.stats import StageStats
from pipelines.posttrain import finetune, reward_model
from pipelines.posttrain.preference_data import make_pair


def number_preferences(n_prompts: int, seed: int) -> list[dict]:
    """Rating-export rows: asked to say a number, the answer with that number is preferred
    over one with another number (learnable only by comparing answer and question)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n_prompts):
        n = rng.randrange(21)
        wrong = rng.choice([m for m in range(21) if m != n])
        responses = [f"{n}", f"{wrong}"]
        rows.append({"prompt": f"Say the number {n}.", "responses": responses, "ties": []})
    return rows


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> str:
    return build_chat_model(tmp_path_factory.mktemp("model"))


def test_reward_model_scores_last_real_token(chat_model):
    """Padding must not change a score: the head reads each row's last non-pad token."""
    tokenizer = finetune.load_tokenizer(chat_model)
    model = reward_model.load_reward_model(chat_model, tokenizer.pad_token_id).eval()
    pairs = [make_pair([{"role": "user", "content": "Say the number 3."}], "3", "4 and more words")]
    [example] = finetune.tokenize_pairs(tokenizer, pairs, 64, StageStats("t"))
    with torch.no_grad():
        chosen, rejected = reward_model.scores(
            model, finetune.pair_batch([example], tokenizer.pad_token_id)
        )
        alone = reward_model.scores(
            model, finetune.pair_batch([(example[0], example[0])], tokenizer.pad_token_id)
        )
    assert example[0].input_ids != example[1].input_ids
    torch.testing.assert_close(chosen, alone[0])  # padded in the first batch, not in the second


@pytest.mark.ray
def test_learnable_preference_reaches_high_heldout_accuracy(
    ray_cluster, chat_model, tmp_path, monkeypatch
):
    monkeypatch.chdir(Path(chat_model).parent)  # a relative model path, as `natal run` gives
    data = tmp_path / "ratings.jsonl"
    rows = number_preferences(400, seed=0)
    rows.append({"prompt": "Say 1.", "responses": ["1", "1"], "ties": []})  # identical: skipped
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(
        None,
        [
            "reward.lr=3e-3",
            "reward.micro_batch=16",
            "reward.warmup_steps=5",
            "reward.log_every=20",
            "reward.eval_every=0",
            "reward.checkpoint_every=0",
            "reward.val_fraction=0.2",
            "reward.max_seq_len=64",
        ],
        {"reward.max_steps": 120},
    )
    stats = reward_model.run(cfg, Path(chat_model).name, [str(data)], str(tmp_path / "run"))
    assert stats["breakdown"]["skipped_by_reason"]["identical_pair"] == 1
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert evaluation["pairs"] == stats["counts"]["val_pairs"] >= 40
    assert evaluation["accuracy"] >= 0.8, evaluation  # chance is 0.5
    assert stats["val_accuracy"] == evaluation["accuracy"]
    from transformers import AutoModelForSequenceClassification

    final = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "final")
    assert final.config.num_labels == 1 and final.config.pad_token_id is not None
    assert (tmp_path / "run" / "final" / "tokenizer.json").exists()


@pytest.mark.ray
def test_a_qwen2_reward_model_with_lora_learns_and_exports_merged(ray_cluster, tmp_path):
    """Bring your own model: Qwen2 with ChatML, adapters plus a new head trained whole; the
    export is a plain Qwen2 sequence classifier, the adapter beside it."""
    from tiny_chat import CHATML, build_qwen2_chat_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model = build_qwen2_chat_model(tmp_path / "qwen2-base")
    data = tmp_path / "ratings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in number_preferences(400, seed=0)))
    overrides = ["reward.micro_batch=16", "reward.warmup_steps=5", "reward.log_every=20"]
    overrides += ["reward.eval_every=0", "reward.checkpoint_every=0", "reward.val_fraction=0.2"]
    overrides += ["reward.max_seq_len=128", "reward.lr=1e-2"]
    flags = {"reward.max_steps": 60, "reward.lora_r": 16, "reward.chat_template": str(CHATML)}
    cfg = load_config(None, overrides, flags)
    stats = reward_model.run(cfg, model, [str(data)], str(tmp_path / "run"))
    assert stats["val_accuracy"] >= 0.65, stats  # chance is 0.5 (50 pairs: p < 0.02)
    final = tmp_path / "run" / "final"
    assert AutoConfig.from_pretrained(final).model_type == "qwen2"
    classifier = AutoModelForSequenceClassification.from_pretrained(final)
    assert classifier.config.num_labels == 1
    assert (tmp_path / "run" / "final-adapter" / "adapter_config.json").exists()


@pytest.mark.ray
def test_real_hh_rlhf_trains_end_to_end_through_the_cli(
    ray_cluster, chat_model, shared_data, tmp_path
):
    # A slice of the real file, in its own format (gzip JSONL), keeps the test short.
    with gzip.open(shared_data / "preference" / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as fh:
        lines = [next(fh) for _ in range(200)]
    hh = tmp_path / "hh-slice.jsonl.gz"
    with gzip.open(hh, "wt") as fh:
        fh.writelines(lines)
    output = tmp_path / "run"
    code = cli.main(
        [
            "reward",
            "--model",
            chat_model,
            "--data",
            str(hh),
            "--output",
            str(output),
            "--max-steps",
            "3",
            "--set",
            "reward.max_seq_len=48",
            "--set",
            "reward.micro_batch=4",
            "--set",
            "reward.eval_batches=2",
            "--set",
            "reward.log_every=1",
        ],
    )
    assert code == 0
    stats = json.loads((output / "stats.json").read_text())
    assert stats["breakdown"]["files_by_format"] == {"hh_rlhf": 1}
    assert stats["counts"]["records"] == 200
    assert stats["counts"]["pairs"] > 190
    assert stats["counts"]["truncated_pairs"] > 100  # left-truncated to the final turns
    assert stats["steps"] == 3
    evaluation = json.loads((output / "eval.json").read_text())
    assert evaluation["pairs"] == 8
    # eval.json is the exported model's own score on the held-out pairs: recomputed from final/
    cfg = load_config(None, ["reward.max_seq_len=48", "reward.micro_batch=4"])
    tok, _, val = finetune.preference_splits(
        cfg.reward, chat_model, [str(hh)], None, StageStats("r")
    )
    final = reward_model.load_reward_model(str(output / "final"), tok.pad_token_id).eval()
    correct = 0
    with torch.no_grad():
        for chunk in finetune.eval_chunks(val, 4, 0, 1, 2):
            chosen, rejected = reward_model.scores(
                final, finetune.pair_batch(chunk, tok.pad_token_id)
            )
            correct += int((chosen > rejected).sum())
    assert evaluation["accuracy"] == correct / 8
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] > 0 for r in rows)
