"""Advantage estimators, KL estimators and losses of the RLHF loop: pure torch functions.

Shapes: ``[B, T]`` token tensors with a ``mask`` (1 on response tokens, 0 on prompt/padding);
``[P, G]`` reward tensors for P prompts with G samples each (GRPO/RLOO groups).
The learner actors call these; nothing here knows about Ray or vLLM.
"""

from __future__ import annotations

from typing import Literal

import torch

KLKind = Literal["k1", "k2", "k3"]
LossAgg = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"]
ISMode = Literal["tis", "mis", "none"]


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


def agg_count(mask: torch.Tensor, agg: LossAgg = "token-mean") -> float:
    """What :func:`aggregate` divides by: response tokens (token-mean) or sequences."""
    if agg == "token-mean":
        return float(mask.sum())
    if agg in ("seq-mean-token-sum", "seq-mean-token-mean"):
        return float((mask.sum(1) > 0).sum())
    raise ValueError(f"unknown loss aggregation {agg!r} ({', '.join(LossAgg.__args__)})")


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    agg: LossAgg = "token-mean",
    normalizer: float | None = None,
) -> torch.Tensor:
    """Per-token losses ``[B, T]`` → one scalar: a *sum* divided by ``normalizer``.

    token-mean: Σ tokens / #tokens; seq-mean-token-sum: Σ (Σ of a sequence's tokens) / #seqs;
    seq-mean-token-mean: Σ (mean of a sequence's tokens) / #seqs. ``normalizer`` is the count
    of the whole optimizer step (every minibatch shard on every learner, summed first), so how
    a step's samples are split does not change its gradient; None: this batch's own count.
    """
    mask = mask.to(per_token.dtype)
    summed = (per_token * mask).sum(1)
    if agg == "seq-mean-token-mean":
        summed = summed / mask.sum(1).clamp(min=1.0)
    count = agg_count(mask, agg) if normalizer is None else normalizer
    return summed.sum() / max(count, 1.0)


def importance_weights(
    logp: torch.Tensor,
    behaviour_logp: torch.Tensor,
    mask: torch.Tensor,
    mode: ISMode = "tis",
    cap: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token weights π_learner / π_behaviour for samples drawn by another policy.

    The behaviour policy is the rollout engine's (its sampled log-probs): weights from an older
    version (async mode) or numerically different kernels. ``tis``: truncated at ``cap``;
    ``mis``: tokens above ``cap`` are masked out (weight 0); ``none``: all 1. Returns the
    weights (no gradient) and their statistics, with KL(behaviour ‖ learner) (k3).
    """
    ratio = torch.exp((logp - behaviour_logp).detach())
    over = (ratio > cap).to(ratio.dtype)
    if mode == "tis":
        weights = torch.clamp(ratio, max=cap)
    elif mode == "mis":
        weights = ratio * (1.0 - over)
    elif mode == "none":
        weights = torch.ones_like(ratio)
    else:
        raise ValueError(f"unknown importance sampling {mode!r} (tis, mis, none)")
    stats = {
        "is_ratio_mean": float(masked_mean(ratio, mask)),
        "is_ratio_max": float((ratio * mask).max()) if mask.any() else 1.0,
        "is_capped_fraction": float(masked_mean(over, mask)),
        "mismatch_kl": float(masked_mean(kl_estimate(behaviour_logp, logp.detach()), mask)),
    }
    return weights, stats


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    is_weights: torch.Tensor | None = None,
    agg: LossAgg = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate loss; returns (loss, fraction of clipped tokens).

    ``advantages`` is ``[B, T]``, or ``[B]`` (one per sequence, broadcast over its tokens).
    ``is_weights`` (:func:`importance_weights`) multiply each token's loss; ``agg`` and
    ``normalizer`` reduce them (:func:`aggregate`).
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logp)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    if is_weights is not None:
        per_token = per_token * is_weights
    loss = aggregate(per_token, mask, agg, normalizer)
    clip_fraction = masked_mean((clipped < unclipped).to(logp.dtype), mask)
    return loss, clip_fraction


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
    normalizer: float | None = None,
) -> torch.Tensor:
    """PPO's clipped value loss: ½ max((v − R)², (clip(v, v_old ± ε) − R)²), token mean.

    ``normalizer``: the step's token count over all shards (see :func:`aggregate`).
    """
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    losses = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * aggregate(losses, mask, "token-mean", normalizer)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the categorical distribution given by ``logits`` [..., V]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
