"""Fault injection for the tests; production code has no hook for it.

The faults must happen inside Ray worker processes (a rollout actor, a Ray Train worker),
which a monkeypatch in the pytest process does not reach. So each fault here is a small
function that the test hands to the production code's own Ray objects, through the pytest
process, and that patches the worker process it lands in:

- :func:`rollout_dies_once`: wraps ``actors.rollout.rollout_actor`` (production's actor class,
  with production's options) so that every rollout actor created gets, right after its
  creation and before any other call, Ray's ``actor.__ray_call__`` (a DeveloperAPI that runs a
  callable on the actor instance) with :func:`_die_in_next_generation`. A restarted actor is a
  fresh, unpatched instance.
- :func:`train_worker_fails_once`: wraps ``ray.train.torch.TorchTrainer`` so that the
  ``train_loop_per_worker`` natal gives it first patches ``ray.train.report`` in the worker
  process, then runs natal's loop unchanged.

A marker file (under the test's ``tmp_path``) makes each fault fire once per test however many
workers or restarts see it, and lets the test assert that it fired. This module is pickled by
value (cloudpickle), so Ray workers need not be able to import ``tests/``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import ray.cloudpickle

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def claim(marker: str) -> bool:
    """True for the first process that creates ``marker`` (atomic), False for every later one."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    return True


# --- rollout actors -------------------------------------------------------------------------


@contextlib.contextmanager
def rollout_dies_once(marker: Path) -> Iterator[None]:
    """While active, the first rollout actor to generate kills its own process, once.

    The process dies (``os._exit``) in its first generation, as a crashed engine would; Ray
    restarts the actor (production's ``max_restarts``) and the pool has to cope.
    """
    from actors import rollout

    real = rollout.rollout_actor
    installs: list[Any] = []

    def rollout_actor(*args: Any, **kwargs: Any) -> _Patching:
        return _Patching(real(*args, **kwargs), str(marker), installs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rollout, "rollout_actor", rollout_actor)
        yield
    ray.get(installs, timeout=60)  # a patch that failed in an actor fails the test here


class _Patching:
    """A Ray actor class whose ``remote()`` also installs the fault in the new actor."""

    def __init__(self, actor_class: Any, marker: str, installs: list[Any]) -> None:
        self.actor_class, self.marker, self.installs = actor_class, marker, installs

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = self.actor_class.remote(*args, **kwargs)
        # Runs in the actor before anything else this process sends it (calls from one caller
        # keep their order).
        self.installs.append(handle.__ray_call__.remote(_die_in_next_generation, self.marker))
        return handle


def _die_in_next_generation(worker: Any, marker: str) -> None:
    """In the rollout actor's process: its engine's next ``generate`` kills the process.

    Ray dispatches actor methods through the class, so the instance's engine is patched (an
    instance attribute), not ``RolloutWorker.generate``.
    """
    engine = worker.llm
    generate = engine.generate

    def dying_generate(*args: Any, **kwargs: Any) -> Any:
        if claim(marker):
            os._exit(1)
        return generate(*args, **kwargs)

    engine.generate = dying_generate


# --- Ray Train workers ----------------------------------------------------------------------


@contextlib.contextmanager
def train_worker_fails_once(at_step: int, marker: Path) -> Iterator[None]:
    """While active, rank 0 of a Ray Train run raises once, right after reporting the
    checkpoint of step ``at_step`` (so ``at_step`` must be a checkpoint step).

    The error is ``RuntimeError("injected failure at step N")``: with ``max_failures`` left,
    Ray Train restarts the worker group from that checkpoint; without, ``fit`` fails with it.
    """
    import ray.train.torch

    real = ray.train.torch.TorchTrainer

    def trainer(*, train_loop_per_worker: Any, **kwargs: Any) -> Any:
        loop = _fail_after_report(train_loop_per_worker, at_step, str(marker))
        return real(train_loop_per_worker=loop, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray.train.torch, "TorchTrainer", trainer)
        yield


def _fail_after_report(train_loop: Any, at_step: int, marker: str) -> Any:
    """``train_loop`` preceded, in each worker process, by the patch of ``ray.train.report``."""

    def train_loop_with_fault(config: Any) -> None:
        import ray.train

        report = ray.train.report

        def report_then_fail(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            report(metrics, *args, **kwargs)
            rank = ray.train.get_context().get_world_rank()
            if rank == 0 and metrics.get("step") == at_step and claim(marker):
                raise RuntimeError(f"injected failure at step {at_step}")

        ray.train.report = report_then_fail
        try:
            train_loop(config)
        finally:
            ray.train.report = report

    return train_loop_with_fault
