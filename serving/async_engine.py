"""Concurrent requests into one in-process vLLM engine, from asyncio.

vLLM's ``AsyncLLM`` always runs its engine core in a subprocess, which fails to start with
the CPU build here; the in-process ``LLMEngine`` starts in ~2 s but is synchronous. So one
thread owns the engine: it takes new requests and aborts from a queue, steps the engine
(continuous batching across every request in flight) and hands each output to the asyncio
queue of the request it belongs to. Only that thread ever touches the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from actors.engine import make_llm


@dataclass
class _Submit:
    request_id: str
    prompt: Any
    params: Any
    loop: asyncio.AbstractEventLoop
    outputs: asyncio.Queue


@dataclass
class _Abort:
    request_id: str


_STOP = object()
_DONE = object()


class ThreadedEngine:
    """``generate(prompt, params)`` as an async iterator over vLLM ``RequestOutput``s."""

    def __init__(self, model_dir: str, **engine_overrides: Any) -> None:
        self.llm = make_llm(model_dir, **engine_overrides)
        self.engine = self.llm.llm_engine
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len: int = self.engine.model_config.max_model_len
        self._inbox: queue.Queue = queue.Queue()
        self._live: dict[str, _Submit] = {}
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name="vllm-engine", daemon=True)
        self._thread.start()

    async def generate(self, prompt: Any, params: Any) -> AsyncIterator[Any]:
        """Yield the request's outputs as the engine produces them; abort it if abandoned."""
        request_id = f"req-{next(self._ids)}"
        outputs: asyncio.Queue = asyncio.Queue()
        self._inbox.put(_Submit(request_id, prompt, params, asyncio.get_running_loop(), outputs))
        finished = False
        try:
            while True:
                item = await outputs.get()
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
        finally:
            if not finished:  # the client went away: free the engine's slot
                self._inbox.put(_Abort(request_id))

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def shutdown(self) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout=30)

    # --- the engine thread ------------------------------------------------------------------

    def _deliver(self, submit: _Submit, item: Any) -> bool:
        """Hand an item to the request's event loop; False if that loop is gone."""
        try:
            submit.loop.call_soon_threadsafe(submit.outputs.put_nowait, item)
        except RuntimeError:  # its event loop is closed: nobody is listening any more
            return False
        return True

    def _abort(self, request_id: str) -> None:
        if self._live.pop(request_id, None) is not None:
            self.engine.abort_request([request_id])

    def _take(self, message: Any) -> bool:
        """Apply one inbox message; False when asked to stop."""
        if message is _STOP:
            return False
        if isinstance(message, _Abort):
            self._abort(message.request_id)
            return True
        try:
            self.engine.add_request(message.request_id, message.prompt, message.params)
        except Exception as exc:  # a request the engine refuses fails alone
            self._deliver(message, ValueError(str(exc)))
            return True
        self._live[message.request_id] = message
        return True

    def _run(self) -> None:
        while True:
            block = not self._live  # idle: sleep until a request arrives
            try:
                while True:
                    if not self._take(self._inbox.get(block=block)):
                        return
                    block = False
            except queue.Empty:
                pass
            if not self._live:
                continue
            try:
                outputs = self.engine.step()
            except Exception as exc:  # the engine is broken: fail everyone in flight
                for submit in self._live.values():
                    self._deliver(submit, RuntimeError(f"engine failed: {exc}"))
                self._live.clear()
                continue
            for output in outputs:
                submit = self._live.get(output.request_id)
                if submit is None:
                    continue
                if output.finished:
                    del self._live[output.request_id]
                    if self._deliver(submit, output):
                        self._deliver(submit, _DONE)
                elif not self._deliver(submit, output):
                    self._abort(output.request_id)
