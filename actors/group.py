"""The actors of one RLHF run, started and wired together: rollouts, reward, learners, sync.

:class:`ActorGroup` is what the loop (pipelines/rl/rlhf.py) talks to: it hides which actor does
what, names the actor it waited for when one does not answer, and keeps the weight-sync path
(object store or collective broadcast) in one place.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from actors.pool import RolloutPool, get, split
from cluster.config import RLHFConfig
from cluster.config.errors import InputError


class ActorGroup:
    def __init__(
        self,
        cfg: RLHFConfig,
        policy_dir: str,
        reference_dir: str,
        checkpoint: str | None = None,
        start_version: int = 0,
    ) -> None:
        """``policy_dir``: where the policy starts (a checkpoint's when resuming);
        ``reference_dir``: the frozen reference, always the run's original policy."""
        self.cfg = cfg
        self.policy_dir, self.reference_dir, self.checkpoint = policy_dir, reference_dir, checkpoint
        self.start_version = start_version

    def _get(self, ref: Any, what: str) -> Any:
        return get(ref, self.cfg.actor_timeout_s, what)

    def start(self) -> dict[str, Any]:
        """Start every actor and wait until all answer; returns the rollout engine's info."""
        from actors.learner import learner_actor
        from actors.rollout import rollout_actor
        from actors.scorer import reward_actor

        cfg = self.cfg
        gpu = 1 if cfg.use_gpu else 0
        rollout_cls = rollout_actor(cfg.rollout_cpus, gpu)
        cores = max(os.cpu_count() or 1, 1)
        rollouts = [
            rollout_cls.remote(
                self.policy_dir,
                kv_cache_mb=cfg.kv_cache_mb,
                seed=cfg.seed + i,
                cpu_bind=None if cfg.use_gpu else str(i % cores),  # one core per engine
                weight_version=self.start_version,
            )
            for i in range(cfg.rollout_actors)
        ]
        self.pool = RolloutPool(rollouts, cfg.actor_timeout_s, current_state=self.learner_state)
        self.pool.version = self.start_version
        self.reward = reward_actor(cfg.reward_cpus).remote(
            cfg.reward_model,
            cfg.reward_fns,
            cfg.reward_model_weight,
            cfg.reward_fn_weight,
            search_path=[p for p in sys.path if p and os.path.isdir(p)],
        )
        learner_cls = learner_actor(cfg.learner_cpus, gpu)
        self.learners = [
            learner_cls.remote(self.reference_dir, cfg, self.checkpoint)
            for _ in range(cfg.learners)
        ]
        master = self._get(self.learners[0].address.remote(), "learner 0")
        joins = [
            lrn.join_group.remote(rank, cfg.learners, master, cfg.actor_timeout_s)
            for rank, lrn in enumerate(self.learners)
        ]
        for rank, ref in enumerate(joins):
            self._get(ref, f"learner {rank} (process group)")
        if self.checkpoint:
            for rank, lrn in enumerate(self.learners):
                self._get(lrn.load_optimizer.remote(self.checkpoint), f"learner {rank}")
        if cfg.weight_sync == "broadcast":
            self.form_weight_group()
        infos = self.pool.wait_ready()
        self._get(self.reward.score.remote([], []), "reward actor (start-up)")
        return infos[0]

    def learner_state(self) -> dict[str, Any]:
        return self._get(self.learners[0].state_numpy.remote(), "learner 0")

    def form_weight_group(self) -> None:
        """Learner 0 + every rollout actor in one broadcast group (again after a restart)."""
        cfg, actors = self.cfg, self.pool.actors
        host, port = self._get(self.learners[0].address.remote(), "learner 0")
        world, backend = 1 + len(actors), "nccl" if cfg.use_gpu else "gloo"
        timeout = cfg.actor_timeout_s
        refs = [
            a.join_weight_group.remote(host, port, i + 1, world, backend, timeout)
            for i, a in enumerate(actors)
        ]
        refs.append(self.learners[0].open_weight_group.remote(host, port, world, backend, timeout))
        for i, ref in enumerate(refs):
            self._get(ref, f"weight group member {i}")
        self.weight_spec = self._get(self.learners[0].weight_spec.remote(), "learner 0")
        self.group_restarts = self.pool.restarts

    def score(self, prompts: list[Any], responses: list[str]) -> dict[str, Any]:
        """Prompt rows (or strings) and their answers → the reward actor's scores."""
        return self._get(self.reward.score.remote(prompts, responses), "reward actor")

    def train(self, batch: list[dict[str, Any]]) -> list[dict[str, float]]:
        """One update, the batch split across the data-parallel learners."""
        if len(batch) < len(self.learners):
            raise InputError(f"{len(batch)} usable answers for {len(self.learners)} learners")
        from actors.learner import minibatch_count

        shards = split(batch, len(self.learners))
        count = minibatch_count([len(s) for s in shards], self.cfg.minibatch_size)
        refs = [
            lrn.train_step.remote(shard, count)
            for lrn, shard in zip(self.learners, shards, strict=True)
        ]
        return [self._get(r, f"learner {i}") for i, r in enumerate(refs)]

    def sync(self, version: int) -> float:
        """New policy weights → every rollout engine; returns the slowest engine's load time."""
        if self.cfg.weight_sync == "broadcast":
            if self.pool.restarts != self.group_restarts:  # a restarted actor left the group
                self.form_weight_group()
            return self.pool.sync_broadcast(self.learners[0], self.weight_spec, version)
        return self.pool.sync(self.learner_state(), version)

    def save(self, directory: str, tokenizer_dir: str) -> None:
        self._get(self.learners[0].save.remote(directory, tokenizer_dir), "learner 0 (checkpoint)")

    def shutdown(self) -> None:
        import ray

        for actor in [*self.pool.actors, self.reward, *self.learners]:
            ray.kill(actor)
