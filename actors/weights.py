"""Weight sync learner → rollout engines by collective broadcast (NCCL on GPUs, gloo on CPU).

The object-store path (one ``ray.put`` of numpy arrays, every engine ``ray.get``s it) is the
default and needs nothing here. This is the other path: learner rank 0 and every rollout actor
form their own small process group — built straight from a ``TCPStore``, so it lives beside
the learners' DDP group and vLLM's own distributed state without touching either — and rank 0
broadcasts each tensor, in a fixed order both sides know from a spec of names, shapes, dtypes.
"""

from __future__ import annotations

import datetime
from typing import Any

import torch

Spec = list[tuple[str, tuple[int, ...], str]]


def state_spec(state: dict[str, torch.Tensor]) -> Spec:
    """(name, shape, dtype) of every tensor, in the broadcast order (sorted by name)."""
    return [(name, tuple(state[name].shape), str(state[name].dtype)) for name in sorted(state)]


def make_group(backend: str, host: str, port: int, rank: int, world: int, timeout_s: float) -> Any:
    """A process group of ``world`` ranks rendezvousing at ``host:port`` (rank 0 hosts the store).

    Every rank must call this at about the same time: construction waits for all of them.
    """
    timeout = datetime.timedelta(seconds=timeout_s)
    store = torch.distributed.TCPStore(
        host, port, world, is_master=rank == 0, timeout=timeout, wait_for_workers=False
    )
    if backend == "nccl":
        group_cls = getattr(torch.distributed, "ProcessGroupNCCL", None)
        if group_cls is None:
            raise RuntimeError("NCCL weight sync needs a CUDA build of torch and GPUs")
        return group_cls(store, rank, world)
    return torch.distributed.ProcessGroupGloo(store, rank, world, timeout)


def _broadcast(group: Any, tensor: torch.Tensor) -> None:
    options = torch.distributed.BroadcastOptions()
    options.rootRank = 0
    group.broadcast([tensor], options).wait()


def send_state(group: Any, state: dict[str, torch.Tensor], device: torch.device) -> int:
    """Rank 0: broadcast every tensor of ``state``; returns the bytes sent."""
    sent = 0
    for name, _, _ in state_spec(state):
        tensor = state[name].detach().to(device).contiguous()
        _broadcast(group, tensor)
        sent += tensor.numel() * tensor.element_size()
    return sent


def receive_state(group: Any, spec: Spec, device: torch.device) -> dict[str, torch.Tensor]:
    """Other ranks: receive the tensors described by ``spec`` from rank 0."""
    state = {}
    for name, shape, dtype in spec:
        tensor = torch.empty(
            shape, dtype=getattr(torch, dtype.removeprefix("torch.")), device=device
        )
        _broadcast(group, tensor)
        state[name] = tensor
    return state
