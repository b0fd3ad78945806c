"""The RLHF loop with the real vLLM engine on CPU: learning, PPO, sync, resume, failures."""

from __future__ import annotations

import json
import math

import pytest
from faults import rollout_dies_once
from tiny_model import build_tiny_model

from cluster.config import RLHFConfig, load_config
from cluster.config.errors import InputError
from pipelines.rl import rlhf
from pipelines.rl.prompts import (
    PromptCursor,
    encode_prompts,
    read_prompts,
    split_heldout,
    write_prompts,
)

# Every actor of these runs asks for half a CPU, so rollout + learner + reward fit on 2 cores.
SMALL = [
    "rlhf.rollout_cpus=0.5",
    "rlhf.learner_cpus=0.5",
    "rlhf.reward_cpus=0.25",
    "rlhf.kv_cache_mb=64",
    "rlhf.max_prompt_tokens=48",
    "rlhf.actor_timeout_s=300",
]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("policy") / "tiny"))


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [{"prompt": f"Write numbers, item {i}:"} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_sample_advantages_grpo_and_rloo_per_group():
    scores = [1.0, 0.0, 5.0, 5.0, 2.0]
    groups = [0, 0, 1, 1, 2]
    grpo = rlhf.sample_advantages(scores, groups, "grpo")
    assert grpo[0] > 0 > grpo[1]
    assert grpo[2] == grpo[3] == 0.0  # no signal in a flat group
    assert grpo[4] == 0.0  # a lone sample has nothing to compare with
    rloo = rlhf.sample_advantages(scores, groups, "rloo")
    assert rloo[:2] == pytest.approx([1.0, -1.0])


def test_prompts_are_read_encoded_and_drawn_deterministically(tmp_path, policy):
    from transformers import AutoTokenizer

    path = tmp_path / "p.jsonl"
    rows = [
        {"prompt": "hello"},
        {"messages": [{"role": "user", "content": "hi there"}], "answer": 3},
        {"prompt": "   "},
        {"prompt": "long " * 200},
    ]
    turns = [("user", "What is json?"), ("assistant", "A module."), ("user", "And csv?")]
    chat = [{"role": r, "content": c} for r, c in [*turns, ("assistant", "reference")]]
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"messages": chat}]))
    loaded = read_prompts(str(path))
    assert loaded[1]["prompt"] == "hi there" and loaded[1]["answer"] == 3
    # a multi-turn prompt keeps the conversation so far, without its trailing answer
    assert loaded[4]["messages"] == chat[:3] and loaded[4]["prompt"] == "And csv?"
    loaded = loaded[:4]
    encoded, skipped = encode_prompts(loaded, AutoTokenizer.from_pretrained(policy), 48)
    assert [bool(ids) for ids in encoded] == [True, True, False, False]
    assert skipped == {"empty_prompt": 1, "prompt_too_long": 1}
    first = PromptCursor([0, 1, 2, 3], seed=1)
    drawn = first.take(6)
    again = PromptCursor([0, 1, 2, 3], seed=1, position=2)
    assert again.take(4) == drawn[2:]
    assert sorted(drawn[:4]) == [0, 1, 2, 3]  # each epoch is a permutation


def test_bad_prompt_files_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        read_prompts(str(empty))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt field"}\n')
    with pytest.raises(InputError, match="bad.jsonl:1"):
        read_prompts(str(bad))
    with pytest.raises(InputError, match="no usable prompt"):
        PromptCursor([], seed=0)


def test_held_out_prompts_are_a_seeded_disjoint_part_and_never_all(tmp_path):
    user = [{"role": "user", "content": "p"}]
    rows = [{"prompt": "p", "messages": user, "answer": i} for i in range(10)]
    train, held = split_heldout(rows, 0.3, seed=4)
    assert len(held) == 3 and len(train) == 7
    assert sorted(r["answer"] for r in train + held) == list(range(10))  # disjoint, complete
    assert split_heldout(rows, 0.3, seed=4) == (train, held)  # a resume splits the same way
    assert split_heldout(rows, 0.3, seed=5)[1] != held
    assert len(split_heldout(rows, 0.01, seed=0)[1]) == 1  # a fraction > 0 holds one out
    assert split_heldout(rows, 0.0, seed=0) == (rows, [])
    write_prompts(str(tmp_path / "held.jsonl"), held)
    assert read_prompts(str(tmp_path / "held.jsonl")) == held  # what natal eval reads back
    with pytest.raises(InputError, match=r"heldout_fraction=0.5 holds out all 1 prompts"):
        split_heldout(rows[:1], 0.5, seed=0)
    with pytest.raises(InputError, match="none left to train on"):
        split_heldout(rows, 0.96, seed=0)


@pytest.mark.slow
def test_grpo_learns_a_verifiable_task_and_resumes(ray_cluster, policy, prompts, tmp_path):
    out = tmp_path / "grpo"
    overrides = SMALL + [
        "rlhf.algo=grpo",
        "rlhf.reward_fns=[pipelines.rl.verifiers:digit_fraction]",
        "rlhf.prompts_per_step=4",
        "rlhf.group_size=8",
        "rlhf.max_new_tokens=12",
        "rlhf.lr=0.005",
        "rlhf.kl_coef=0.0",
        "rlhf.checkpoint_every=4",
    ]
    cfg = load_config(None, overrides + ["rlhf.steps=8", "rlhf.heldout_fraction=0.25"])
    first = rlhf.run(cfg, policy, prompts, str(out))
    assert first["counts"]["steps"] == 8
    # 3 of the 12 prompts are held out, never trained on, and written for natal eval
    assert (first["counts"]["prompts"], first["counts"]["heldout_prompts"]) == (9, 3)
    assert len(read_prompts(first["heldout"])) == 3
    assert (out / "checkpoints" / "step_8" / "state.json").exists()
    cfg = load_config(None, overrides + ["rlhf.steps=16", "rlhf.heldout_fraction=0.25"])
    stats = rlhf.run(cfg, policy, prompts, str(out))
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 17))  # resumed at 9, nothing repeated
    early = sum(r["reward_mean"] for r in rows[:4]) / 4
    late = sum(r["reward_mean"] for r in rows[-4:]) / 4
    assert late > early + 0.15, (early, late)
    assert all(r["samples"] == 32 for r in rows)
    assert all(r["staleness"] == 0 for r in rows)  # sync mode is on-policy
    assert (out / "final" / "config.json").exists() and (out / "rlhf.png").stat().st_size > 0
    assert stats["reward_last"] == pytest.approx(rows[-1]["reward_mean"], abs=1e-3)
    for key in ("kl", "entropy", "clip_fraction", "time_generate", "time_sync", "tokens_per_s"):
        assert key in rows[-1]


@pytest.mark.slow
def test_ppo_with_broadcast_sync_improves_and_survives_a_rollout_crash(
    ray_cluster, policy, prompts, tmp_path
):
    out = tmp_path / "ppo"
    marker = tmp_path / "crashed"
    cfg = load_config(
        None,
        SMALL
        + [
            "rlhf.algo=ppo",
            "rlhf.weight_sync=broadcast",
            "rlhf.reward_fns=[pipelines.rl.verifiers:digit_fraction]",
            "rlhf.steps=14",
            "rlhf.prompts_per_step=4",
            "rlhf.group_size=8",
            "rlhf.max_new_tokens=12",
            "rlhf.lr=0.005",
            "rlhf.critic_lr=0.005",
            "rlhf.kl_coef=0.0",
            "rlhf.checkpoint_every=0",
        ],
    )
    with rollout_dies_once(marker):  # tests/faults.py
        rlhf.run(cfg, policy, prompts, str(out))
    rows = metrics(out)
    assert marker.exists()  # the rollout actor did die once, in the first generation
    assert rows[-1]["rollout_restarts"] >= 1
    # every prompt of every step was answered group_size times despite the crash
    assert all(r["samples"] == 32 for r in rows)
    assert all("value_loss" in r and math.isfinite(r["value_loss"]) for r in rows)
    early = sum(r["reward_mean"] for r in rows[:3]) / 3
    late = sum(r["reward_mean"] for r in rows[-3:]) / 3
    assert late > early + 0.1, (early, late)


@pytest.mark.slow
def test_rloo_async_with_a_trained_reward_model_and_a_failing_rule(
    ray_cluster, policy, prompts, tmp_path
):
    from pipelines.posttrain import reward_model

    preferences = tmp_path / "preferences.jsonl"
    rows = [
        {"prompt": f"Write numbers, item {i}:", "responses": ["1 2 3 4 5", "the cat sat"]}
        for i in range(16)
    ]
    preferences.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rm_cfg = load_config(None, ["reward.max_steps=2", "reward.micro_batch=4"])
    reward_model.run(rm_cfg, model=policy, data=[str(preferences)], output=str(tmp_path / "rm"))
    out = tmp_path / "rloo"
    cfg = load_config(
        None,
        SMALL
        + [
            "rlhf.algo=rloo",
            "rlhf.mode=async",
            "rlhf.learners=2",  # data-parallel learners in their own gloo group
            f"rlhf.reward_model={tmp_path / 'rm' / 'final'}",
            "rlhf.reward_fns=[toy_rewards:flaky]",
            "rlhf.steps=3",
            "rlhf.prompts_per_step=4",
            "rlhf.group_size=4",
            "rlhf.max_new_tokens=8",
            "rlhf.temperature=0.8",
        ],
    )
    stats = rlhf.run(cfg, policy, prompts, str(out))
    rows = metrics(out)
    assert all(r["samples"] == 16 for r in rows)
    assert sum(r["reward_errors"] for r in rows) > 0  # the failing rule is counted...
    assert any(k.startswith("reward_error: toy_rewards:flaky") for k in stats["counts"])
    assert all(r["trained_samples"] + r["reward_errors"] <= 16 for r in rows)  # ...and left out
    assert [r["staleness"] for r in rows[1:]] == [1.0] * (len(rows) - 1)  # one step off-policy
    assert all(math.isfinite(r["reward_mean"]) for r in rows)  # scored by the reward model
    trained = [r for r in rows if not r.get("skipped_update")]
    assert trained and all(math.isfinite(r["policy_loss"]) for r in trained)
    # the behaviour policy is the rollout's: step 1 on-policy (learner = vLLM at T=0.8), the
    # later ones drawn by the weights before the last update, weighted by the capped ratio
    assert rows[0]["logprob_gap_max"] < 1e-4 and rows[0]["is_capped_fraction"] == 0
    assert all(r["logprob_gap_max"] > 10 * rows[0]["logprob_gap_max"] for r in rows[1:])
    assert all(r["mismatch_kl"] >= 0 and "is_ratio_mean" in r for r in trained)


@pytest.mark.slow
def test_rollout_greedy_equals_learner_after_weight_sync(ray_cluster, policy):
    import ray

    from actors.learner import learner_actor
    from actors.pool import RolloutPool
    from actors.rollout import rollout_actor

    rollout = rollout_actor(num_cpus=0.5).remote(policy, kv_cache_mb=64)
    learner = learner_actor(num_cpus=0.5).remote(policy, RLHFConfig(lr=0.01, temperature=0.7))
    pool = RolloutPool([rollout], timeout=300)
    prompts = [[5, 17, 40, 41], [7, 8, 9]]
    samples = ray.get(rollout.generate.remote(list(enumerate(prompts)), 4, 6, temperature=0.7))
    batch = [
        {
            "prompt_ids": s.prompt_ids,
            "response_ids": s.response_ids,
            "logprobs": s.logprobs,
            "advantage": 1.0 if i % 2 else -1.0,
        }
        for i, s in enumerate(samples)
    ]
    before = ray.get(learner.greedy.remote(prompts, 8))
    first = ray.get(learner.train_step.remote(batch))
    # vLLM's log-probs of its samples at T=0.7 are the learner's (logits / T), fp32
    assert first["logprob_gap_max"] < 1e-4 and first["is_ratio_mean"] == pytest.approx(1, abs=1e-4)
    for _ in range(2):
        ray.get(learner.train_step.remote(batch))
    after = ray.get(learner.greedy.remote(prompts, 8))
    assert after != before  # the update changed the policy
    assert pool.greedy(prompts, 8) == before  # the engine still has the old weights
    pool.sync(ray.get(learner.state_numpy.remote()), version=1)
    assert pool.greedy(prompts, 8) == after
    assert ray.get(rollout.info.remote())["weight_version"] == 1
    ray.kill(rollout)
    ray.kill(learner)


@pytest.mark.slow
def test_a_lora_qwen2_policy_syncs_merged_weights_resumes_and_exports(
    ray_cluster, prompts, tmp_path
):
    """Bring your own model with LoRA: vLLM samples from the learner's merged weights after
    a sync and after a resume (the log-prob gap stays at fp32 noise), the reference stays the
    adapters-off base across the resume (KL 0 at step 1, > 0 after), the export is a merged
    Qwen2 with the adapter beside it, and natal serve answers from the adapter directory."""
    import torch
    from tiny_chat import build_qwen2_chat_model
    from transformers import AutoConfig, Qwen2ForCausalLM

    policy = build_qwen2_chat_model(tmp_path / "qwen2", template=True)
    out = tmp_path / "lora"
    overrides = SMALL + [
        "rlhf.reward_fns=[pipelines.rl.verifiers:digit_fraction]",
        "rlhf.prompts_per_step=2",
        "rlhf.group_size=4",
        "rlhf.max_new_tokens=8",
        "rlhf.lr=0.02",
        "rlhf.minibatch_size=64",  # one minibatch a step: step 1 trains at the reference
        "rlhf.checkpoint_every=2",
        "rlhf.heldout_fraction=0",
        "rlhf.max_prompt_tokens=160",  # ChatML's default system turn is long in this vocabulary
    ]
    flags = {"rlhf.lora_r": 8}
    rlhf.run(load_config(None, overrides + ["rlhf.steps=2"], flags), policy, prompts, str(out))
    rlhf.run(load_config(None, overrides + ["rlhf.steps=3"], flags), policy, prompts, str(out))
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["logprob_gap_max"] < 1e-4 for r in rows), [r["logprob_gap_max"] for r in rows]
    assert rows[0]["kl"] == pytest.approx(0, abs=1e-7) and rows[2]["kl"] > 1e-5
    assert AutoConfig.from_pretrained(out / "final").model_type == "qwen2"
    assert (out / "final-adapter" / "adapter_config.json").exists()
    merged = Qwen2ForCausalLM.from_pretrained(out / "final").state_dict()
    base = Qwen2ForCausalLM.from_pretrained(policy).state_dict()
    assert any(not torch.equal(base[k], merged[k]) for k in base)  # it trained
    # natal serve takes the adapter alone (merged on the replica) and answers the openai client
    from conftest import free_port

    from serving import openai_app

    serve_cfg = {"serve.port": free_port(), "serve.kv_cache_mb": 64, "serve.max_model_len": 256}
    served = openai_app.run(load_config(values=serve_cfg), str(out / "final-adapter"), "Hi")
    assert served["model"] == "final-adapter" and isinstance(served["reply"], str)


def test_vocab_and_context_mismatch_are_clear_errors(policy, prompts, tmp_path):
    loop = rlhf.RLHFLoop(load_config(None, SMALL).rlhf, policy, prompts, str(tmp_path))
    with pytest.raises(InputError, match="vocabulary"):
        loop.check_vocab(engine_vocab=10, max_model_len=512)
    with pytest.raises(InputError, match="context"):
        loop.check_vocab(engine_vocab=10_000, max_model_len=50)
