"""Learner actor: the policy (and PPO's critic) being trained, plus a frozen reference.

With LoRA (``rlhf.lora_r``) policy and critic train adapters only and the reference is the
policy's own base with its adapters off, so the learner holds one copy of the model.

Several learners train data-parallel: they form a torch.distributed group among themselves
(gloo on CPU, nccl on GPU) and wrap the policy in DDP, so gradients are averaged across the
shards of each step's samples. Rank 0 hands the new weights to the rollout engines.
"""

from __future__ import annotations

import math
import os
import socket
import time
from datetime import timedelta
from typing import Any

import numpy as np
import torch

from actors import algorithms as alg
from cluster.config import RLHFConfig
from pipelines.posttrain import lora
from pipelines.posttrain.losses import token_logprobs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def node_address() -> tuple[str, int]:
    """This process's address and a free port: rank 0 of the learner group serves on it."""
    return socket.gethostbyname(socket.gethostname()), free_port()


def minibatch_count(shard_sizes: list[int], minibatch_size: int) -> int:
    """Minibatches per epoch for a data-parallel step: what the largest shard needs."""
    return max(1, math.ceil(max(shard_sizes) / minibatch_size))


def pad_batch(samples: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompt+response token rows, right-padded, with the response mask over *targets*.

    ``mask[b, t]`` is 1 where target token ``t+1`` of row ``b`` is a response token, so it
    lines up with log-probs computed from ``logits[:, :-1]`` against ``input_ids[:, 1:]``.
    """
    rows = [s["prompt_ids"] + s["response_ids"] for s in samples]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for b, (sample, row) in enumerate(zip(samples, rows, strict=True)):
        input_ids[b, : len(row)] = torch.tensor(row)
        attention[b, : len(row)] = 1
        start = len(sample["prompt_ids"]) - 1
        mask[b, start : start + len(sample["response_ids"])] = 1.0
    return {"input_ids": input_ids, "attention_mask": attention, "mask": mask}


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """What the optimizer holds state for: everything, or only the adapters with LoRA."""
    return [p for p in model.parameters() if p.requires_grad]


class LearnerWorker:
    """One data-parallel learner; wrapped as a Ray actor by :func:`learner_actor`."""

    def __init__(self, policy_dir: str, cfg: RLHFConfig, checkpoint: str | None = None):
        """``policy_dir``: the run's starting policy, which is also the frozen reference;
        ``checkpoint``: a directory :meth:`save` wrote, to continue from (weights only: the
        optimizer comes with :meth:`load_optimizer`)."""
        from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

        self.cfg, self.policy_dir = cfg, policy_dir
        torch.manual_seed(self.cfg.seed)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        load = {"dtype": torch.float32}
        part = (lambda name: os.path.join(checkpoint, name)) if checkpoint else (lambda _: None)
        if cfg.lora_r:
            # adapters on the starting weights: with them off, the policy is the reference
            self.policy = lora.wrap(
                AutoModelForCausalLM.from_pretrained(policy_dir, **load),
                cfg,
                adapter_dir=part("policy-adapter"),
            ).to(self.device)
            self.reference = None
        else:
            self.policy = AutoModelForCausalLM.from_pretrained(
                part("policy") or policy_dir, **load
            ).to(self.device)
            self.reference = AutoModelForCausalLM.from_pretrained(policy_dir, **load).to(
                self.device
            )
            self.reference.requires_grad_(False).eval()
        self.critic = None
        if self.cfg.algo == "ppo":
            critic_base = policy_dir if cfg.lora_r else part("critic") or policy_dir
            critic = AutoModelForTokenClassification.from_pretrained(
                critic_base, num_labels=1, **load
            )
            adapter = part("critic-adapter")
            self.critic = lora.wrap(critic, cfg, "TOKEN_CLS", adapter).to(self.device)
        self.pad_id = self.policy.config.pad_token_id or 0
        self.rank, self.world = 0, 1
        self.model = self.policy  # DDP-wrapped once the group is formed
        self.critic_model = self.critic
        self.optimizer = torch.optim.AdamW(trainable(self.policy), lr=self.cfg.lr)
        self.critic_optimizer = (
            torch.optim.AdamW(trainable(self.critic), lr=self.cfg.critic_lr)
            if self.critic is not None
            else None
        )

    # --- the process group ------------------------------------------------------------------

    def address(self) -> tuple[str, int]:
        return node_address()

    def join_group(
        self, rank: int, world: int, master: tuple[str, int], timeout_s: float = 300.0
    ) -> int:
        """Form the torch.distributed group of all learners and wrap the models in DDP.

        ``timeout_s`` bounds every collective: a rank left waiting raises instead of hanging.
        """
        self.rank, self.world = rank, world
        if world == 1:
            return rank
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = master[0], str(master[1])
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
        )
        self.model = DDP(self.policy)
        if self.critic is not None:
            self.critic_model = DDP(self.critic)
        return rank

    # --- one step ---------------------------------------------------------------------------

    def _logprobs(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """Log-probs of each next token under the *sampling* distribution: logits / T."""
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits[:, :-1] / self.cfg.temperature
        return token_logprobs(logits, batch["input_ids"][:, 1:]), logits

    def _reference_logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.reference is not None:
            return self._logprobs(self.reference, batch)[0]
        training = self.policy.training
        self.policy.eval()  # no dropout in the reference, as in the frozen copy
        try:
            with lora.adapters_off(self.policy):
                return self._logprobs(self.policy, batch)[0]
        finally:
            self.policy.train(training)

    def _step_counts(self, mask: torch.Tensor, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per minibatch: the loss normalizer and the token count, summed over all learners."""
        counts = torch.tensor(
            [[alg.agg_count(mask[idx], self.cfg.loss_agg), float(mask[idx].sum())] for idx in parts]
        )
        if self.world > 1:
            import torch.distributed as dist

            counts = counts.to(self.device)  # NCCL reduces device tensors only
            dist.all_reduce(counts)  # every learner calls it once per step: no rank waits
        return counts.cpu()

    def train_step(
        self, samples: list[dict[str, Any]], minibatches: int | None = None
    ) -> dict[str, float]:
        """Update on this learner's shard; each sample has ids, ``logprobs`` (the rollout's),
        ``advantage`` or ``score``.

        ``minibatches``: how many optimizer steps per epoch. Data-parallel learners must all
        take the same number (each backward is an all-reduce), so the group passes the count
        its largest shard needs (:func:`minibatch_count`); a shard too small for it runs
        zero-weight minibatches that only join the all-reduce. Each loss is a sum divided by
        the count of its minibatch over *all* learners (``rlhf.loss_agg``), times the world
        size that DDP's gradient mean divides by: the step's gradient is the same however
        its samples are split.
        """
        s = self.cfg
        minibatches = minibatches or minibatch_count([len(samples)], s.minibatch_size)
        started = time.perf_counter()
        batch = {k: v.to(self.device) for k, v in pad_batch(samples, self.pad_id).items()}
        mask = batch["mask"]
        parts = list(torch.tensor_split(torch.arange(len(samples)), minibatches))
        counts = self._step_counts(mask.cpu(), parts)
        with torch.no_grad():
            old_logp, _ = self._logprobs(self.policy, batch)
            ref_logp = self._reference_logprobs(batch)
            rollout_logp = torch.zeros_like(old_logp)
            for b, sample in enumerate(samples):
                start = len(sample["prompt_ids"]) - 1
                lp = torch.tensor(sample["logprobs"], dtype=old_logp.dtype)
                rollout_logp[b, start : start + len(lp)] = lp.to(self.device)
            gap = (old_logp - rollout_logp).abs()
            is_weights, is_stats = alg.importance_weights(
                old_logp, rollout_logp, mask, s.importance_sampling, s.tis_cap
            )
            kl_old = alg.kl_estimate(old_logp, ref_logp, s.kl_estimator)
            if s.algo == "ppo":
                scores = torch.tensor([x["score"] for x in samples], device=self.device)
                values = self.critic(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).logits[:, :-1, 0]
                rewards = alg.token_rewards(scores, mask, kl_old, s.kl_coef)
                advantages, returns = alg.gae(rewards, values, mask, s.gamma, s.lam)
                advantages = alg.masked_whiten(advantages, mask)
            else:
                advantages = torch.tensor([x["advantage"] for x in samples], device=self.device)
                advantages = advantages[:, None].expand_as(mask)
        max_norm = s.grad_clip or math.inf  # 0: no clipping (the norm is still logged)
        metrics: dict[str, list[float]] = {}
        for _ in range(s.epochs):
            for idx, (normalizer, tokens) in zip(parts, counts.tolist(), strict=True):
                weight = float(self.world) if len(idx) else 0.0  # undoes DDP's mean
                idx = idx if len(idx) else torch.arange(1)  # an empty share: joins, adds 0
                part = {k: v[idx] for k, v in batch.items()}
                logp, logits = self._logprobs(self.model, part)
                m = part["mask"]
                loss, clip_fraction = alg.policy_loss(
                    logp, old_logp[idx], advantages[idx], m, s.clip_eps,
                    is_weights[idx], s.loss_agg, normalizer,
                )  # fmt: skip
                kl = alg.kl_estimate(logp, ref_logp[idx], s.kl_estimator)
                if s.algo != "ppo":  # GRPO/RLOO: KL as a loss term
                    loss = loss + s.kl_coef * alg.aggregate(kl, m, s.loss_agg, normalizer)
                loss = loss * weight
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm)
                self.optimizer.step()
                step = {"policy_loss": loss.item(), "kl": alg.masked_mean(kl, m).item()}
                step["clip_fraction"] = clip_fraction.item()
                step["entropy"] = alg.masked_mean(alg.entropy_from_logits(logits.detach()), m)
                step["grad_norm"] = float(grad_norm)
                if s.algo == "ppo":  # the critic's backward is an all-reduce too: same count
                    v = self.critic_model(
                        input_ids=part["input_ids"], attention_mask=part["attention_mask"]
                    ).logits[:, :-1, 0]
                    vloss = alg.value_loss(v, values[idx], returns[idx], m, s.value_clip, tokens)
                    self.critic_optimizer.zero_grad(set_to_none=True)
                    (vloss * weight).backward()
                    torch.nn.utils.clip_grad_norm_(self.critic.parameters(), max_norm)
                    self.critic_optimizer.step()
                    step["value_loss"] = vloss.item() * weight
                for key, value in step.items() if weight else ():
                    _append(metrics, key, float(value))
        result = {k: float(np.mean(v)) for k, v in metrics.items()}
        result["logprob_gap_vs_rollout"] = float(alg.masked_mean(gap, mask))
        result["logprob_gap_max"] = float((gap * mask).max())
        result.update(is_stats)
        result["train_seconds"] = time.perf_counter() - started
        return result

    # --- weights ----------------------------------------------------------------------------

    def policy_state(self) -> dict[str, torch.Tensor]:
        """What the rollout engines load: the policy under its Hugging Face names, with LoRA
        adapters merged (the engines run the plain architecture)."""
        return lora.merged_state(self.policy)

    def state_numpy(self) -> dict[str, np.ndarray]:
        """The policy's weights as numpy arrays (the cheapest form through the object store)."""
        return {k: v.detach().cpu().numpy() for k, v in self.policy_state().items()}

    def open_weight_group(
        self, host: str, port: int, world: int, backend: str, timeout_s: float
    ) -> int:
        """Rank 0 of the broadcast group shared with the rollout actors (see actors/weights)."""
        from actors.weights import make_group

        self.weight_group = make_group(backend, host, port, 0, world, timeout_s)
        return 0

    def weight_spec(self) -> list[tuple[str, tuple[int, ...], str]]:
        from actors.weights import state_spec

        return state_spec(self.policy_state())

    def broadcast_weights(self) -> float:
        """Send the policy to every rollout actor of the group; returns seconds."""
        from actors.weights import send_state

        started = time.perf_counter()
        send_state(self.weight_group, self.policy_state(), self.device)
        return time.perf_counter() - started

    def greedy(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """transformers' greedy answers, to check a rollout engine against after a sync."""
        answers = []
        with torch.no_grad():
            for ids in prompts:
                out = self.policy.generate(
                    torch.tensor([ids], device=self.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.pad_id,
                )
                answers.append(out[0, len(ids) :].tolist())
        return answers

    def save(self, directory: str, tokenizer_dir: str | None = None) -> str:
        """Write the policy (HF dir, adapters merged: what rollouts and users load), the critic,
        the optimizer states and, with LoRA, the adapters alone under ``directory``."""
        from transformers import AutoTokenizer

        os.makedirs(directory, exist_ok=True)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else None
        lora.save_merged(self.policy, os.path.join(directory, "policy"))
        if tokenizer is not None:
            tokenizer.save_pretrained(os.path.join(directory, "policy"))
        adapter = os.path.join(directory, "policy-adapter")
        lora.save_adapter(self.policy, adapter, self.policy_dir, tokenizer)
        state = {"optimizer": self.optimizer.state_dict()}
        if self.critic is not None:
            lora.save_merged(self.critic, os.path.join(directory, "critic"))
            adapter = os.path.join(directory, "critic-adapter")
            lora.save_adapter(self.critic, adapter, self.policy_dir)
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
        torch.save(state, os.path.join(directory, "optimizer.pt"))
        return directory

    def load_optimizer(self, directory: str) -> None:
        state = torch.load(os.path.join(directory, "optimizer.pt"), weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.critic_optimizer is not None and "critic_optimizer" in state:
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])

    def ping(self) -> int:
        return os.getpid()


def _append(metrics: dict[str, list[float]], key: str, value: float) -> None:
    if not math.isnan(value):
        metrics.setdefault(key, []).append(value)


def learner_actor(num_cpus: float = 1, num_gpus: float = 0):
    import ray

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(LearnerWorker)
