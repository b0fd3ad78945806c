"""Advantage estimators, KL estimators and losses of the RLHF loop: pure torch functions.

Shapes: ``[B, T]`` token tensors with a ``mask`` (1 on response tokens, 0 on prompt/padding);
``[P, G]`` reward tensors for P prompts with G samples each (GRPO/RLOO groups).
The learner actors call these; nothing here knows about Ray or vLLM.
"""

from __future__ import annotations

from typing import Literal

import torch

KLKind = Literal["k1", "k2", "k3"]


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1 (0 where the mask is empty)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalize to zero mean, unit variance over the masked positions (PPO advantages)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: KLKind = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy ‖ reference) from sampled-token log-probs (Schulman).

    k1 = log π − log π_ref (unbiased, can be negative); k2 = ½(log ratio)²;
    k3 = exp(log π_ref − log π) − (log π_ref − log π) − 1 (unbiased, always ≥ 0).
    """
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        neg = -log_ratio
        return torch.expm1(neg) - neg
    raise ValueError(f"unknown KL estimator {kind!r} (k1, k2, k3)")


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6, scale: bool = True) -> torch.Tensor:
    """Group-normalized advantages (GRPO): (r − mean of the group) / (std of the group + eps).

    ``rewards`` is ``[P, G]``; a group whose samples all got the same reward gets zeros.
    """
    mean = rewards.mean(dim=1, keepdim=True)
    centered = rewards - mean
    if not scale:
        return centered
    if rewards.shape[1] < 2:
        return centered
    std = rewards.std(dim=1, keepdim=True, unbiased=True)
    return torch.where(std > 0, centered / (std + eps), torch.zeros_like(centered))


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages (RLOO): r_i − mean of the other G−1 samples of the prompt."""
    group = rewards.shape[1]
    if group < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt")
    total = rewards.sum(dim=1, keepdim=True)
    return (group * rewards - total) / (group - 1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over response tokens; returns (advantages, returns).

    ``rewards``, ``values``, ``mask``: ``[B, T]``. The value after the last response token is 0.
    Positions outside the mask get 0 and do not carry the recursion.
    """
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    last = torch.zeros(values.shape[0], dtype=values.dtype, device=values.device)
    next_value = torch.zeros_like(last)
    for t in reversed(range(values.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        last = last * m
        advantages[:, t] = last
        next_value = torch.where(m > 0, values[:, t], next_value)
    returns = (advantages + values) * mask
    return advantages, returns


def token_rewards(
    scores: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """PPO's per-token reward: −kl_coef·KL on every response token, the score on the last one."""
    mask = mask.to(scores.dtype)
    rewards = torch.zeros_like(mask)
    if kl is not None and kl_coef:
        rewards = rewards - kl_coef * kl * mask
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * mask).argmax(dim=1)
    rewards[torch.arange(mask.shape[0]), last] += scores
    return rewards


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate loss (token mean); returns (loss, fraction of clipped tokens).

    ``advantages`` is ``[B, T]``, or ``[B]`` (one per sequence, broadcast over its tokens).
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logp)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped < unclipped).to(logp.dtype), mask)
    return loss, clip_fraction


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> torch.Tensor:
    """PPO's clipped value loss: ½ max((v − R)², (clip(v, v_old ± ε) − R)²), token mean."""
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    losses = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(losses, mask)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the categorical distribution given by ``logits`` [..., V]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
