"""The rollout actors as one pool: spread prompts over them, wait with a timeout, survive deaths.

A rollout actor that dies mid-step is restarted by Ray (``max_restarts``); the pool brings it
back to the current weights and sends it the same prompts again. Only a completed call's
samples are kept, so no sample is lost or counted twice.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from cluster.config.errors import NatalError


class ActorTimeout(NatalError):
    """An actor did not answer within the configured time."""


def get(ref: Any, timeout: float, what: str) -> Any:
    """``ray.get`` that names the actor it waited for when it gives up."""
    try:
        return ray.get(ref, timeout=timeout)
    except GetTimeoutError:
        raise ActorTimeout(f"{what} did not answer within {timeout:.0f} s") from None


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` contiguous chunks of near-equal size (some may be empty)."""
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


class RolloutPool:
    def __init__(
        self,
        actors: list[Any],
        timeout: float,
        max_redispatch: int = 3,
        current_state: Any = None,
    ) -> None:
        """``current_state()``: the learner's weights, for reviving an actor when the last
        sync went by broadcast (nothing in the object store to reload from)."""
        self.actors = actors
        self.current_state = current_state
        self.timeout = timeout
        self.max_redispatch = max_redispatch
        self.weights_ref: Any = None
        self.version = 0
        self.restarts = 0

    def wait_ready(self) -> list[dict[str, Any]]:
        return [
            get(a.info.remote(), self.timeout, f"rollout actor {i} (start-up)")
            for i, a in enumerate(self.actors)
        ]

    def submit(self, prompts: list[tuple[int, list[int]]], params: dict[str, Any]) -> list[Any]:
        """Start generation on every actor; returns handles for :meth:`collect`."""
        chunks = split(prompts, len(self.actors))
        return [
            (i, chunk, self.actors[i].generate.remote(chunk, **params) if chunk else None)
            for i, chunk in enumerate(chunks)
        ]

    def collect(self, pending: list[Any], params: dict[str, Any]) -> list[Any]:
        """Samples of every chunk, re-dispatching the chunks of actors that died."""
        samples: list[Any] = []
        for i, chunk, ref in pending:
            if ref is None:
                continue
            attempts = 0
            while True:
                try:
                    samples.extend(get(ref, self.timeout, f"rollout actor {i} (generate)"))
                    break
                except RayActorError:
                    attempts += 1
                    self.restarts += 1
                    if attempts > self.max_redispatch:
                        raise NatalError(
                            f"rollout actor {i} died {attempts} times in one step; giving up"
                        ) from None
                    self._revive(i)
                    ref = self.actors[i].generate.remote(chunk, **params)
        return samples

    def _revive(self, i: int) -> None:
        """Wait for Ray to restart actor ``i`` and give it the current weights again."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                get(self.actors[i].info.remote(), self.timeout, f"rollout actor {i} (restart)")
                break
            except RayActorError:
                if time.monotonic() > deadline:
                    raise ActorTimeout(f"rollout actor {i} did not come back") from None
                time.sleep(0.5)
        if self.weights_ref is None and self.current_state is not None and self.version:
            self.weights_ref = ray.put(self.current_state())
        if self.weights_ref is not None:
            get(
                self.actors[i].load_weights.remote(self.weights_ref, self.version),
                self.timeout,
                f"rollout actor {i} (weights after restart)",
            )

    def sync(self, state: dict[str, Any], version: int) -> float:
        """One ``ray.put`` of the weights; every actor loads them. Returns the slowest load (s)."""
        self.weights_ref = ray.put(state)
        self.version = version
        refs = [a.load_weights.remote(self.weights_ref, version) for a in self.actors]
        seconds = 0.0
        for i, ref in enumerate(refs):
            try:
                seconds = max(seconds, get(ref, self.timeout, f"rollout actor {i} (weights)"))
            except RayActorError:
                self.restarts += 1
                self._revive(i)
        return seconds

    def sync_broadcast(self, learner: Any, spec: Any, version: int) -> float:
        """Broadcast from learner rank 0 through the weight group; returns the slowest load."""
        self.weights_ref = None  # the object store no longer holds the current weights
        self.version = version
        receives = [a.receive_weights.remote(spec, version) for a in self.actors]
        send = learner.broadcast_weights.remote()
        seconds = [
            get(r, self.timeout, f"rollout actor {i} (weights)") for i, r in enumerate(receives)
        ]
        get(send, self.timeout, "learner 0 (weight broadcast)")
        return max(seconds)

    def greedy(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        return get(
            self.actors[0].greedy.remote(prompts, max_new_tokens), self.timeout, "rollout actor 0"
        )
