"""The learner's update: a resume continues the same optimizer, shards of any size agree,
the gradient does not depend on how a step is split, stale samples are importance-weighted."""

from __future__ import annotations

import os
import random
import socket

import pytest
import torch
import torch.multiprocessing as mp
from tiny_model import build_tiny_model

from actors.learner import LearnerWorker, learner_actor, minibatch_count, pad_batch
from actors.pool import split
from cluster.config import RLHFConfig

SETTINGS = RLHFConfig(algo="grpo", lr=3e-3, minibatch_size=4, kl_coef=0.05)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("learner") / "tiny"))


def samples(count: int, seed: int) -> list[dict]:
    """Rollout-shaped samples: prompt and response ids, sampled logprobs, an advantage (GRPO)
    or a score (PPO)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        response = [rng.randrange(3, 400) for _ in range(rng.randint(3, 8))]
        rows.append(
            {
                "prompt_ids": [rng.randrange(3, 400) for _ in range(rng.randint(2, 6))],
                "response_ids": response,
                "logprobs": [-2.0] * len(response),
                "advantage": 1.0 if i % 2 else -1.0,
                "score": float(i % 3),
            }
        )
    return rows


def params(worker: LearnerWorker) -> torch.Tensor:
    """The policy the rollouts get (adapters merged with LoRA)."""
    return torch.cat([v.detach().flatten() for _, v in sorted(worker.policy_state().items())])


def test_minibatch_count_is_what_the_largest_shard_needs():
    assert minibatch_count([5, 4], 4) == 2
    assert minibatch_count([4, 4], 4) == 1
    assert minibatch_count([1, 0], 4) == 1


@pytest.mark.parametrize(("algo", "lora_r"), [("grpo", 0), ("grpo", 8), ("ppo", 8)])
def test_a_resumed_learner_matches_an_uninterrupted_one(policy, tmp_path, algo, lora_r):
    """3 steps, save, a new learner from the checkpoint, 3 more == 6 straight (fp32); with
    LoRA the adapters (and PPO's critic adapter and head) come back from the checkpoint."""
    settings = SETTINGS.model_copy(update={"algo": algo, "lora_r": lora_r})
    if lora_r:
        settings = settings.model_copy(update={"lr": 3e-2, "critic_lr": 3e-2})
    batches = [samples(6, seed) for seed in range(6)]
    straight = LearnerWorker(policy, settings)
    for batch in batches:
        straight.train_step(batch)

    first = LearnerWorker(policy, settings)
    for batch in batches[:3]:
        first.train_step(batch)
    first.save(str(tmp_path / "ckpt"))
    resumed = LearnerWorker(policy, settings, checkpoint=str(tmp_path / "ckpt"))
    resumed.load_optimizer(str(tmp_path / "ckpt"))
    fresh_optimizer = LearnerWorker(policy, settings, checkpoint=str(tmp_path / "ckpt"))
    for batch in batches[3:]:
        resumed.train_step(batch)
        fresh_optimizer.train_step(batch)

    tolerance = 1e-5
    assert (params(resumed) - params(straight)).abs().max().item() < tolerance
    # the test can tell: dropping Adam's moments moves the weights by far more than that
    assert (params(fresh_optimizer) - params(straight)).abs().max().item() > 100 * tolerance


def test_a_lora_learner_holds_one_model_whose_base_is_the_reference(policy, tmp_path):
    """Adapters train, the base stays bit-for-bit, adapters-off is the starting policy (KL
    starts at 0 and grows), and a checkpoint holds the merged policy plus the adapter."""
    from transformers import AutoConfig

    worker = LearnerWorker(policy, SETTINGS.model_copy(update={"lora_r": 8, "lr": 3e-2}))
    assert worker.reference is None
    start = LearnerWorker(policy, SETTINGS)  # full fine-tuning: a separate frozen copy
    trainable = sum(p.numel() for p in worker.policy.parameters() if p.requires_grad)
    assert trainable < 0.1 * sum(p.numel() for p in worker.policy.parameters())
    frozen = {n: p.clone() for n, p in worker.policy.named_parameters() if not p.requires_grad}
    rows = [worker.train_step(samples(4, seed)) for seed in range(3)]  # one minibatch each
    assert rows[0]["kl"] == pytest.approx(0, abs=1e-6) and rows[-1]["kl"] > 1e-4
    assert all(
        torch.equal(p, frozen[n]) for n, p in worker.policy.named_parameters() if n in frozen
    )
    batch = pad_batch(samples(4, 9), 0)
    with torch.no_grad():
        expected = start._logprobs(start.reference, batch)[0]
        assert torch.allclose(worker._reference_logprobs(batch), expected, atol=1e-6)
        assert not torch.allclose(worker._logprobs(worker.policy, batch)[0], expected, atol=1e-3)
    state = worker.policy_state()
    assert set(state) == set(start.policy.state_dict())  # plain names: what vLLM loads
    worker.save(str(tmp_path / "ckpt"))
    assert AutoConfig.from_pretrained(tmp_path / "ckpt" / "policy").model_type == "llama"
    assert (tmp_path / "ckpt" / "policy-adapter" / "adapter_config.json").exists()


def test_two_learners_with_uneven_shards_take_the_same_steps(ray_cluster, policy):
    """9 samples on 2 learners (5 + 4) with minibatches of 4: both run 2 all-reduces."""
    import ray

    cls = learner_actor(num_cpus=0.5)
    learners = [cls.remote(policy, SETTINGS) for _ in range(2)]
    master = ray.get(learners[0].address.remote(), timeout=120)
    ray.get(
        [lrn.join_group.remote(r, 2, master, 60) for r, lrn in enumerate(learners)], timeout=120
    )

    shards = split(samples(9, seed=7), 2)
    assert [len(s) for s in shards] == [5, 4]
    count = minibatch_count([len(s) for s in shards], SETTINGS.minibatch_size)
    refs = [lrn.train_step.remote(s, count) for lrn, s in zip(learners, shards, strict=True)]
    results = ray.get(refs, timeout=120)  # a rank left waiting in an all-reduce times out
    assert all(r["policy_loss"] == r["policy_loss"] for r in results)
    states = ray.get([lrn.state_numpy.remote() for lrn in learners], timeout=120)
    assert all((states[0][k] == states[1][k]).all() for k in states[0])  # DDP kept them equal
    for lrn in learners:
        ray.kill(lrn)


# --- the same gradient however a step's samples are split ---------------------------------


def exact(agg: str) -> RLHFConfig:
    """One minibatch per step, no clipping: the gradient left in ``.grad`` is the step's."""
    return RLHFConfig(algo="grpo", lr=1e-3, minibatch_size=16, kl_coef=0.05, grad_clip=0.0,
                      loss_agg=agg)  # fmt: skip


def grads(worker: LearnerWorker) -> torch.Tensor:
    """The gradient of the last optimizer step (kept: zero_grad runs before each backward)."""
    return torch.cat([p.grad.flatten() for p in worker.policy.parameters()])


def _rank(rank: int, port: int, policy: str, shards: list, out: str, agg: str) -> None:
    torch.set_num_threads(1)
    worker = LearnerWorker(policy, exact(agg))
    worker.join_group(rank, 2, ("127.0.0.1", port), timeout_s=120)
    worker.train_step(shards[rank], minibatches=1)
    torch.save(grads(worker), f"{out}/grad-{rank}.pt")
    # exit at once: tearing down DDP and the gloo group at interpreter exit can deadlock (the
    # reducer's destructor joins a gloo thread that waits for the GIL it holds)
    os._exit(0)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_two_learners_take_the_one_learner_gradient(policy, tmp_path, agg):
    """8 samples of uneven lengths on 1 learner, or 5 + 3 on 2 (gloo, no Ray): one gradient.

    Per-learner means averaged by DDP would weigh each of the 3-sample shard's tokens more.
    """
    batch = samples(8, seed=3)
    assert len({len(x["response_ids"]) for x in batch}) > 1
    one = LearnerWorker(policy, exact(agg))
    one.train_step(batch, minibatches=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = (port, policy, [batch[:5], batch[5:]], str(tmp_path), agg)
    mp.start_processes(_rank, args=args, nprocs=2, join=True, start_method="spawn")
    two = [torch.load(tmp_path / f"grad-{r}.pt") for r in range(2)]
    assert torch.equal(two[0], two[1])  # DDP's all-reduce
    scale = grads(one).abs().max().item()
    assert (two[0] - grads(one)).abs().max().item() < 1e-5 * scale


# --- samples drawn by older weights (async mode) --------------------------------------------


@torch.no_grad()
def drawn_by(worker: LearnerWorker, batch: list[dict]) -> list[dict]:
    """``batch`` as if ``worker``'s policy had sampled it now: its log-probs as behaviour."""
    from actors.learner import pad_batch

    logp, _ = worker._logprobs(worker.policy, pad_batch(batch, worker.pad_id))
    out = []
    for b, sample in enumerate(batch):
        start = len(sample["prompt_ids"]) - 1
        lp = logp[b, start : start + len(sample["response_ids"])].tolist()
        out.append({**sample, "logprobs": lp})
    return out


def test_stale_samples_are_weighted_by_the_truncated_ratio(policy):
    """Samples drawn one update ago (staleness 1): the ratio learner / behaviour is not 1 and
    TIS caps it; on fresh samples it is 1 and nothing is capped."""
    cfg = RLHFConfig(algo="grpo", lr=0.05, minibatch_size=16, kl_coef=0.0, tis_cap=1.05)
    batch, other = samples(8, seed=11), samples(8, seed=12)
    tis = LearnerWorker(policy, cfg)
    fresh = tis.train_step(drawn_by(tis, batch))
    assert fresh["is_ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    assert fresh["is_capped_fraction"] == 0.0 and fresh["mismatch_kl"] < 1e-8

    stale = drawn_by(tis, batch)  # drawn by this version ...
    tis.train_step(drawn_by(tis, other))  # ... then the learner moves on one update
    off = tis.train_step(stale)
    assert abs(off["is_ratio_mean"] - 1.0) > 1e-3 and off["mismatch_kl"] > 1e-6
    assert off["is_ratio_max"] > cfg.tis_cap and 0 < off["is_capped_fraction"] < 1

    # the weights change the update: the same steps without them end elsewhere
    plain = LearnerWorker(policy, cfg.model_copy(update={"importance_sampling": "none"}))
    plain.train_step(drawn_by(plain, batch))
    stale = drawn_by(plain, batch)
    plain.train_step(drawn_by(plain, other))
    plain.train_step(stale)
    assert (params(plain) - params(tis)).abs().max().item() > 1e-6
