"""What each stage asks Ray for, from the config: one place, so stages and manifests agree.

Stages pass these to Ray instead of hard-coding numbers; that is what lets Ray's autoscaler
(or KubeRay's) add the right nodes for pending work, so that more nodes mean more throughput:

- Ray Data stages: ``ds.map_batches(fn, **data_task_resources(cfg))``.
- Ray Train stages (a ``TrainingConfig`` section such as ``cfg.pretrain``):
  ``TorchTrainer(..., scaling_config=train_scaling_config(cfg.pretrain, min_workers))``; with
  ``resources.train_min_workers`` set it is elastic, ``num_workers=(min, workers)``: the run
  restarts its worker group on a resize and resumes from the latest checkpoint.
- Serve replicas and RLHF actors: ``serve_replica_resources``/``rlhf_demands``, the numbers
  the serving and RLHF sections already hold, as Ray resource dicts.

``stage_demands(cfg, stage)`` lists all of a stage's units; ``tests/test_k8s.py`` checks that
the KubeRay worker groups can hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.config import NatalConfig, TrainingConfig

DATA_STAGES = (
    "crawl",
    "ingest",
    "filter",
    "dedup",
    "decontaminate",
    "curate",
    "tokenizer",
    "tokenize",
)
TRAIN_STAGES = ("pretrain", "sft", "reward", "dpo")


@dataclass(frozen=True)
class Demand:
    """``count`` units of work that each need ``resources`` (Ray names: CPU, GPU) at once."""

    what: str
    resources: dict[str, float]
    count: int = 1


def data_task_resources(cfg: NatalConfig) -> dict[str, float]:
    """Keyword arguments for ``Dataset.map``/``map_batches``: CPUs per task."""
    return {"num_cpus": cfg.resources.data_cpus_per_task}


def train_worker_resources(section: TrainingConfig) -> dict[str, float]:
    """What one Ray Train worker holds: its CPUs, and one GPU when the stage uses GPUs."""
    worker = {"CPU": section.cpus_per_worker}
    if section.use_gpu:
        worker["GPU"] = 1.0
    return worker


def train_num_workers(section: TrainingConfig, min_workers: int | None) -> int | tuple[int, int]:
    """``workers``, or ``(min_workers, workers)`` for an elastic run."""
    low = min_workers
    return section.workers if low is None or low >= section.workers else (low, section.workers)


def train_scaling_config(section: TrainingConfig, min_workers: int | None = None, **overrides: Any):
    """The Ray Train ``ScalingConfig`` of a training stage (elastic when a minimum is set:
    ``resources.train_min_workers``, which every training stage passes here)."""
    from ray.train import ScalingConfig

    kwargs: dict[str, Any] = {
        "num_workers": train_num_workers(section, min_workers),
        "use_gpu": section.use_gpu,
        "resources_per_worker": train_worker_resources(section),
    }
    kwargs.update(overrides)
    return ScalingConfig(**kwargs)


def serve_replica_resources(cfg: NatalConfig) -> dict[str, float]:
    """One Serve replica of the OpenAI app (``serve.num_cpus``/``num_gpus``)."""
    replica = {"CPU": float(cfg.serve.num_cpus)}
    if cfg.serve.num_gpus > 0:
        replica["GPU"] = float(cfg.serve.num_gpus)
    return replica


def rlhf_demands(cfg: NatalConfig) -> list[Demand]:
    """RLHF's actors: vLLM rollouts and learners (one GPU each with ``use_gpu``), the reward."""
    r = cfg.rlhf
    gpu = {"GPU": 1.0} if r.use_gpu else {}
    return [
        Demand("rollout actor", {"CPU": r.rollout_cpus, **gpu}, r.rollout_actors),
        Demand("learner actor", {"CPU": r.learner_cpus, **gpu}, r.learners),
        Demand("reward actor", {"CPU": r.reward_cpus}, 1),
    ]


def stage_demands(cfg: NatalConfig, stage: str) -> list[Demand]:
    """Everything ``stage`` asks Ray for at once (data stages: one task, any number of them)."""
    if stage in DATA_STAGES:
        return [Demand("data task", {"CPU": data_task_resources(cfg)["num_cpus"]})]
    if stage in TRAIN_STAGES:
        section = getattr(cfg, stage)
        return [Demand("train worker", train_worker_resources(section), section.workers)]
    if stage == "serve":
        return [Demand("serve replica", serve_replica_resources(cfg), cfg.serve.max_replicas)]
    if stage == "rlhf":
        return rlhf_demands(cfg)
    return []


def fits(demand: dict[str, float], node: dict[str, float]) -> bool:
    """Whether a node offering ``node`` resources can run one unit asking for ``demand``."""
    return all(node.get(key, 0.0) >= amount for key, amount in demand.items() if amount > 0)


def units_per_node(demand: dict[str, float], node: dict[str, float]) -> int:
    """How many units asking for ``demand`` one node holds at once."""
    counts = [int(node.get(key, 0.0) // amount) for key, amount in demand.items() if amount > 0]
    return min(counts) if counts else 0
