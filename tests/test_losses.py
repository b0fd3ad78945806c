"""Post-training losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.posttrain.losses import (
    bradley_terry_loss,
    dpo_loss,
    label_logprobs,
    lm_loss_sum,
    pairwise_accuracy,
    sequence_logprob,
    token_logprobs,
)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_with_and_without_margin():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = (-math.log(sigmoid(1.0)) - math.log(sigmoid(-1.0))) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, rel=1e-6)
    with_margin = (-math.log(sigmoid(0.5)) - math.log(sigmoid(-1.5))) / 2
    assert bradley_terry_loss(chosen, rejected, margin=0.5).item() == pytest.approx(
        with_margin, rel=1e-6
    )
    assert pairwise_accuracy(chosen, rejected).item() == 0.5
    assert pairwise_accuracy(torch.tensor([1.0]), torch.tensor([1.0])).item() == 0.0  # tie


def test_dpo_loss_margin_and_accuracy():
    out = dpo_loss(
        policy_chosen=torch.tensor([-10.0, -8.0]),
        policy_rejected=torch.tensor([-12.0, -7.0]),
        reference_chosen=torch.tensor([-11.0, -8.0]),
        reference_rejected=torch.tensor([-11.0, -8.0]),
        beta=0.5,
    )
    # implicit rewards: chosen 0.5*(1, 0) = (0.5, 0); rejected 0.5*(-1, 1) = (-0.5, 0.5)
    z = [1.0, -0.5]
    assert out["loss"].item() == pytest.approx(sum(-math.log(sigmoid(v)) for v in z) / 2, rel=1e-6)
    assert out["margin"].item() == pytest.approx(0.25)
    assert out["chosen_reward"].item() == pytest.approx(0.25)
    assert out["rejected_reward"].item() == pytest.approx(0.0)
    assert out["accuracy"].item() == 0.5
    logprobs = (torch.tensor([v]) for v in (-10.0, -12.0, -11.0, -11.0))
    smoothed = dpo_loss(*logprobs, beta=0.5, label_smoothing=0.1)
    expected = -0.9 * math.log(sigmoid(1.0)) - 0.1 * math.log(sigmoid(-1.0))
    assert smoothed["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_lm_loss_and_logprobs_only_count_labelled_next_tokens():
    # Vocabulary 3, one row of 3 positions; logits at t predict the label at t+1.
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = torch.tensor([[-100, 0, 1]])
    total, count = lm_loss_sum(logits, labels)
    assert count.item() == 2
    assert total.item() == pytest.approx(-math.log(0.5) - math.log(0.8), rel=1e-5)
    assert sequence_logprob(logits, labels).item() == pytest.approx(
        math.log(0.5) + math.log(0.8), rel=1e-5
    )
    picked, mask = label_logprobs(logits, torch.tensor([[-100, -100, 2]]))
    assert mask.tolist() == [[False, True]]
    assert picked[0, 0].item() == 0.0
    assert picked[0, 1].item() == pytest.approx(math.log(0.1), rel=1e-5)


def test_token_logprobs_pick_each_position_s_token():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    assert token_logprobs(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75))
