"""The learner actor's update: a resume continues the same optimizer, shards of any size agree."""

from __future__ import annotations

import random

import pytest
import torch
from tiny_model import build_tiny_model

from actors.learner import LearnerWorker, learner_actor, minibatch_count
from actors.pool import split
from cluster.config import RLHFConfig

SETTINGS = RLHFConfig(algo="grpo", lr=3e-3, minibatch_size=4, kl_coef=0.05)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("learner") / "tiny"))


def samples(count: int, seed: int) -> list[dict]:
    """Rollout-shaped samples: prompt and response ids, sampled logprobs, an advantage."""
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
            }
        )
    return rows


def params(worker: LearnerWorker) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in worker.policy.parameters()])


def test_minibatch_count_is_what_the_largest_shard_needs():
    assert minibatch_count([5, 4], 4) == 2
    assert minibatch_count([4, 4], 4) == 1
    assert minibatch_count([1, 0], 4) == 1


def test_a_resumed_learner_matches_an_uninterrupted_one(policy, tmp_path):
    """3 steps, save, a new learner from the checkpoint, 3 more == 6 straight (fp32)."""
    batches = [samples(6, seed) for seed in range(6)]
    straight = LearnerWorker(policy, SETTINGS)
    for batch in batches:
        straight.train_step(batch)

    first = LearnerWorker(policy, SETTINGS)
    for batch in batches[:3]:
        first.train_step(batch)
    first.save(str(tmp_path / "ckpt"))
    resumed = LearnerWorker(str(tmp_path / "ckpt" / "policy"), SETTINGS, reference_dir=policy)
    resumed.load_optimizer(str(tmp_path / "ckpt"))
    fresh_optimizer = LearnerWorker(
        str(tmp_path / "ckpt" / "policy"), SETTINGS, reference_dir=policy
    )
    for batch in batches[3:]:
        resumed.train_step(batch)
        fresh_optimizer.train_step(batch)

    tolerance = 1e-5
    assert (params(resumed) - params(straight)).abs().max().item() < tolerance
    # the test can tell: dropping Adam's moments moves the weights by far more than that
    assert (params(fresh_optimizer) - params(straight)).abs().max().item() > 100 * tolerance


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
