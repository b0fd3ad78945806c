"""The engine thread: concurrent requests batched into one in-process vLLM engine, aborts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tiny_model import build_tiny_model

from serving.async_engine import ThreadedEngine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedEngine]:
    model = build_tiny_model(tmp_path_factory.mktemp("engine") / "tiny")
    engine = ThreadedEngine(str(model), kv_cache_mb=32, max_model_len=256)
    yield engine
    engine.shutdown()
    assert not engine.is_alive()


def _params(**kw: Any) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    kind = kw.pop("kind", RequestOutputKind.FINAL_ONLY)
    return SamplingParams(output_kind=kind, **kw)


def test_concurrent_requests_each_get_their_own_outputs(engine: ThreadedEngine) -> None:
    async def one(i: int) -> Any:
        outputs = [
            o
            async for o in engine.generate(
                {"prompt_token_ids": [5 + i, 6, 7]}, _params(n=2, max_tokens=6, seed=i)
            )
        ]
        return outputs

    async def all_at_once() -> list[Any]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(8))), 120)

    results = asyncio.run(all_at_once())
    for i, outputs in enumerate(results):
        (final,) = outputs  # FINAL_ONLY: one output, finished
        assert final.finished and final.prompt_token_ids == [5 + i, 6, 7]
        assert len(final.outputs) == 2 and all(len(c.token_ids) <= 6 for c in final.outputs)
    assert not engine.engine.has_unfinished_requests()


def test_abandoned_request_is_aborted(engine: ThreadedEngine) -> None:
    from vllm.sampling_params import RequestOutputKind

    async def read_two() -> int:
        params = _params(max_tokens=200, ignore_eos=True, kind=RequestOutputKind.DELTA)
        stream = engine.generate({"prompt_token_ids": [5, 6, 7]}, params)
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 2:
                break
        await stream.aclose()
        return seen

    assert asyncio.run(read_two()) == 2
    deadline = time.time() + 10
    while engine.engine.has_unfinished_requests() and time.time() < deadline:
        time.sleep(0.05)
    assert not engine.engine.has_unfinished_requests()
    assert engine.is_alive()  # outputs still in flight for the closed event loop are dropped


def test_a_refused_request_fails_alone(engine: ThreadedEngine) -> None:
    async def run() -> tuple[Exception | None, int]:
        async def bad() -> None:
            async for _ in engine.generate({"prompt_token_ids": [10**6]}, _params(max_tokens=2)):
                pass

        async def good() -> int:
            outs = [
                o async for o in engine.generate({"prompt_token_ids": [5]}, _params(max_tokens=3))
            ]
            return len(outs)

        both = asyncio.gather(bad(), good(), return_exceptions=True)
        results = await asyncio.wait_for(both, 120)
        return results[0], results[1]

    error, good = asyncio.run(run())
    assert isinstance(error, ValueError) and good == 1


def test_a_request_whose_event_loop_closed_is_dropped(engine: ThreadedEngine) -> None:
    from serving.async_engine import _Submit

    loop = asyncio.new_event_loop()
    loop.close()
    params = _params(max_tokens=50, ignore_eos=True)
    engine._inbox.put(
        _Submit("orphan", {"prompt_token_ids": [5, 6]}, params, loop, asyncio.Queue())
    )
    deadline = time.time() + 30
    while time.time() < deadline and (
        engine.engine.has_unfinished_requests() or not engine._inbox.empty()
    ):
        time.sleep(0.05)
    assert engine.is_alive() and not engine.engine.has_unfinished_requests()
