"""Losses of the post-training stages, as plain functions on tensors.

Language-model losses return a *sum* and a token count rather than a mean, so that a caller
averaging over micro-batches or data-parallel ranks weighs every token equally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token_t | prefix) for each position: ``logits`` [B, T, V], ``tokens`` [B, T]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def label_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next-token label and where it counts.

    ``logits`` (B, T, V) predict position t+1 from position t; ``labels`` (B, T) hold -100
    where no loss is taken. Returns (B, T-1) log-probs (0 where ignored) and the bool mask.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE
    picked = token_logprobs(logits[:, :-1], targets.clamp(min=0))
    return picked * mask, mask


def lm_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed next-token cross-entropy over labelled tokens, number of labelled tokens)."""
    targets = labels[:, 1:].reshape(-1)
    loss = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(),
        targets,
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, (targets != IGNORE).sum()


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) summed log-probability of each row's labelled tokens (a response given its prompt)."""
    picked, _ = label_logprobs(logits, labels)
    return picked.sum(dim=-1)


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Mean of −log σ(r_chosen − r_rejected − margin): the reward model's pairwise loss.

    A positive margin asks the chosen reward to exceed the rejected one by at least that much
    (Llama 2 used the raters' preference strength).
    """
    return -F.logsigmoid(chosen - rejected - margin).mean()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs whose chosen score is strictly higher (ties count as wrong)."""
    return (chosen > rejected).float().mean()


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> dict[str, torch.Tensor]:
    """DPO (Rafailov et al. 2023) on summed response log-probs of policy and frozen reference.

    The implicit reward of a response is β·(log π(y|x) − log π_ref(y|x)); the loss is
    −log σ(r_chosen − r_rejected), with conservative label smoothing ε optional:
    −(1−ε)·log σ(z) − ε·log σ(−z). Returns the mean loss, the mean rewards, their mean
    margin and the fraction of pairs the implicit reward ranks correctly.
    """
    chosen_reward = beta * (policy_chosen - reference_chosen)
    rejected_reward = beta * (policy_rejected - reference_rejected)
    logits = chosen_reward - rejected_reward
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return {
        "loss": losses.mean(),
        "chosen_reward": chosen_reward.detach().mean(),
        "rejected_reward": rejected_reward.detach().mean(),
        "margin": logits.detach().mean(),
        "accuracy": (logits.detach() > 0).float().mean(),
    }
