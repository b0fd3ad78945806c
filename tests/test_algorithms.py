"""Advantage estimators, KL estimators and losses against hand-computed values."""

import math

import pytest
import torch

from actors.algorithms import (
    aggregate,
    entropy_from_logits,
    gae,
    grpo_advantages,
    importance_weights,
    kl_estimate,
    masked_mean,
    masked_whiten,
    policy_loss,
    rloo_advantages,
    token_rewards,
    value_loss,
)


def test_masked_mean_ignores_masked_positions():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(2.0)
    assert masked_mean(values, mask, dim=1).tolist() == pytest.approx([1.5, 3.0])


def test_masked_whiten_has_zero_mean_unit_variance_on_mask():
    values = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = masked_whiten(values, mask)
    assert out[0, :3].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert out[0, :3].pow(2).mean().item() == pytest.approx(1.0, abs=1e-4)
    assert out[0, 3].item() == 0.0


def test_kl_estimators_by_hand():
    logp = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-1.5, -1.0])
    assert kl_estimate(logp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    assert kl_estimate(logp, ref, "k2").tolist() == pytest.approx([0.125, 0.5])
    # k3 = e^(ref-logp) - (ref-logp) - 1
    expected = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1]
    assert kl_estimate(logp, ref, "k3").tolist() == pytest.approx(expected)
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k9")


def test_grpo_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    adv = grpo_advantages(rewards, eps=0.0)
    std = math.sqrt(1 / 3)  # unbiased std of [1, 0, 0, 1]
    assert adv[0].tolist() == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std])
    assert adv[1].tolist() == pytest.approx([0.0] * 4)  # no signal in a flat group
    assert grpo_advantages(rewards, scale=False)[0].tolist() == pytest.approx(
        [0.5, -0.5, -0.5, 0.5]
    )


def test_rloo_advantages_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 6.0]])
    # r_i - mean(others): 1-4, 2-3.5, 6-1.5
    assert rloo_advantages(rewards)[0].tolist() == pytest.approx([-3.0, -1.5, 4.5])
    with pytest.raises(ValueError):
        rloo_advantages(torch.tensor([[1.0]]))


def test_gae_by_hand():
    # prompt token (mask 0), 3 response tokens, then padding
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    gamma, lam = 0.9, 0.8
    d3 = 1.0 - 0.7
    d2 = 0.0 + gamma * 0.7 - 0.6
    d1 = 0.0 + gamma * 0.6 - 0.5
    a3 = d3
    a2 = d2 + gamma * lam * a3
    a1 = d1 + gamma * lam * a2
    adv, ret = gae(rewards, values, mask, gamma, lam)
    assert adv[0].tolist() == pytest.approx([0.0, a1, a2, a3, 0.0])
    assert ret[0].tolist() == pytest.approx([0.0, a1 + 0.5, a2 + 0.6, a3 + 0.7, 0.0])


def test_token_rewards_put_score_on_last_token_and_kl_everywhere():
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1]])
    kl = torch.full((2, 4), 0.5)
    rewards = token_rewards(torch.tensor([1.0, -1.0]), mask, kl, kl_coef=0.1)
    assert rewards[0].tolist() == pytest.approx([0.0, -0.05, 0.95, 0.0])
    assert rewards[1].tolist() == pytest.approx([0.0, -0.05, -0.05, -1.05])


def test_policy_loss_clips_by_hand():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.ones(1, 3)
    loss, clip_frac = policy_loss(logp, old, adv, mask, clip_eps=0.2)
    # ratios 1.5, 0.5, 1.0 → min(r·A, clip(r)·A): 1.2, -0.8, 2.0
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 2.0) / 3)
    assert clip_frac.item() == pytest.approx(2 / 3)
    seq_loss, _ = policy_loss(logp, old, torch.tensor([1.0]), mask, clip_eps=0.2)
    assert seq_loss.item() == pytest.approx(-(1.2 + 0.5 + 1.0) / 3)


def test_loss_aggregations_by_hand():
    losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # 3 tokens, then 1
    assert aggregate(losses, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(losses, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate(losses, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    # a normalizer counted over the whole step: a shard's sum over the step's 10 tokens
    assert aggregate(losses, mask, "token-mean", normalizer=10).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(losses, mask, "sum")


def test_importance_weights_truncate_or_mask_by_hand():
    behaviour = torch.zeros(1, 3)
    learner = torch.log(torch.tensor([[0.5, 1.5, 4.0]]))  # ratios 0.5, 1.5, 4
    mask = torch.ones(1, 3)
    tis, stats = importance_weights(learner, behaviour, mask, "tis", cap=2.0)
    assert tis[0].tolist() == pytest.approx([0.5, 1.5, 2.0])
    assert stats["is_capped_fraction"] == pytest.approx(1 / 3) and stats["is_ratio_max"] == 4.0
    mis, _ = importance_weights(learner, behaviour, mask, "mis", cap=2.0)
    assert mis[0].tolist() == pytest.approx([0.5, 1.5, 0.0])
    none, same = importance_weights(behaviour, behaviour, mask, "none")
    assert none.tolist() == [[1.0, 1.0, 1.0]] and same["mismatch_kl"] == 0.0
    # k3 of KL(behaviour ‖ learner) on the behaviour's samples: r − 1 − log r, r = π_l/π_b
    expected = sum(r - 1 - math.log(r) for r in (0.5, 1.5, 4.0)) / 3
    assert stats["mismatch_kl"] == pytest.approx(expected, rel=1e-5)
    # the weights scale each token's clipped loss
    adv = torch.ones(1, 3)
    weighted, _ = policy_loss(learner, learner.detach(), adv, mask, 0.2, tis)
    assert weighted.item() == pytest.approx(-(0.5 + 1.5 + 2.0) / 3)


def test_value_loss_by_hand():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.0]])
    returns = torch.tensor([[0.0, 1.0]])
    mask = torch.ones(1, 2)
    # pos0: max((1-0)^2, (0.7-0)^2) = 1; pos1: max(1, 1) = 1
    assert value_loss(values, old, returns, mask, 0.2).item() == pytest.approx(0.5)


def test_entropy_of_uniform_logits_is_log_vocab():
    logits = torch.zeros(1, 2, 4)
    assert entropy_from_logits(logits)[0].tolist() == pytest.approx([math.log(4)] * 2)
