"""``natal serve`` against its own engine: tokens/s and p50/p99 latency, same model, same load.

Peer: the same vLLM engine (``actors.engine.make_llm``) driven directly in a child process,
every request added at once and stepped to completion. ``natal serve`` runs as a subprocess
(its own local Ray cluster, the Serve proxy, one replica) and the same requests go to it at
once through the official ``openai`` client. Both fix the output length (``ignore_eos``), so
they generate the same number of tokens. The two alternate for ``--rounds`` rounds and the
medians are compared, so that load from other processes hits both alike. Goal: serve ≥ 0.9×
the engine's tokens/s.

    .venv/bin/python benchmarks/serve.py                       # a random ~2.4M-param Llama
    .venv/bin/python benchmarks/serve.py --model runs/sft/final --requests 64 --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ENGINE, SERVE = "vLLM engine, direct", "natal serve (HTTP)"
KV_CACHE_MB = 256
MAX_MODEL_LEN = 512


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def prompts(n: int) -> list[str]:
    return [f"Request {i}: the quick brown fox jumps over the lazy dog." for i in range(n)]


_LLM: dict[str, object] = {}  # the child process's engine, built on its first round


def run_engine(model: str, requests: int, max_tokens: int) -> dict[str, float]:
    """Every request into the engine at t0; latency = when each one finished."""
    from vllm import SamplingParams

    from actors.engine import make_llm

    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=1.0, seed=0)
    if model not in _LLM:
        _LLM[model] = make_llm(model, kv_cache_mb=KV_CACHE_MB, max_model_len=MAX_MODEL_LEN)
        _LLM[model].generate(["warm up"], params, use_tqdm=False)
    engine = _LLM[model].llm_engine
    start = time.perf_counter()
    for i, prompt in enumerate(prompts(requests)):
        engine.add_request(str(i), prompt, params)
    latencies, tokens = [], 0
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                latencies.append(time.perf_counter() - start)
                tokens += sum(len(c.token_ids) for c in output.outputs)
    return summarize(tokens, time.perf_counter() - start, latencies)


def summarize(tokens: int, seconds: float, latencies: list[float]) -> dict[str, float]:
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"natal serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("natal serve did not become healthy")


async def _load(base: str, model: str, requests: int, max_tokens: int) -> dict[str, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=600)
    extra = {"ignore_eos": True}
    await client.completions.create(
        model=model, prompt="warm up", max_tokens=max_tokens, extra_body=extra
    )
    start = time.perf_counter()

    async def one(prompt: str) -> tuple[float, int]:
        reply = await client.completions.create(
            model=model,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=1.0,
            seed=0,
            extra_body=extra,
        )
        return time.perf_counter() - start, reply.usage.completion_tokens

    results = await asyncio.gather(*(one(p) for p in prompts(requests)))
    seconds = time.perf_counter() - start
    await client.close()
    return summarize(sum(t for _, t in results), seconds, [lat for lat, _ in results])


@contextmanager
def natal_serve(model: str) -> Iterator[str]:
    """``natal serve`` in a subprocess until the block ends; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        str(ROOT / ".venv" / "bin" / "natal"),
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--set",
        f"serve.kv_cache_mb={KV_CACHE_MB}",
        "--set",
        f"serve.max_model_len={MAX_MODEL_LEN}",
        "--set",
        f"serve.served_model_name={Path(model).name}",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    log = Path(tempfile.mkdtemp(prefix="natal-bench-")) / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_healthy(base, proc)
        except RuntimeError:
            print(log.read_text()[-4000:], file=sys.stderr)
            raise
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model directory (default: a random Llama built here)")
    parser.add_argument("--requests", type=int, default=64, help="requests sent at once")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--hidden-size", type=int, default=256, help="size of the built model")
    parser.add_argument("--layers", type=int, default=4, help="layers of the built model")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each path")
    args = parser.parse_args()
    model = args.model
    if model is None:
        from tiny_model import build_tiny_model

        model = str(
            build_tiny_model(
                Path(tempfile.mkdtemp(prefix="natal-bench-")) / "bench-llama",
                hidden_size=args.hidden_size,
                num_layers=args.layers,
            )
        )
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # Ray sets OMP_NUM_THREADS to the replica's num_cpus (serve.num_cpus: 1); give the direct
    # engine the same, or the two runs use different thread counts
    os.environ["OMP_NUM_THREADS"] = "1"
    print(f"model {model}: {args.requests} requests at once × {args.max_tokens} tokens", flush=True)
    runs: dict[str, list[dict[str, float]]] = {ENGINE: [], SERVE: []}
    context = get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as child, natal_serve(model) as url:
        for _ in range(args.rounds):
            engine = child.submit(run_engine, model, args.requests, args.max_tokens).result()
            runs[ENGINE].append(engine)
            served = asyncio.run(_load(url, Path(model).name, args.requests, args.max_tokens))
            runs[SERVE].append(served)
            print(
                f"round: engine {engine['tokens_per_s']:.0f} tok/s, serve "
                f"{served['tokens_per_s']:.0f} tok/s",
                flush=True,
            )
    print(
        f"\n{'path (median)':<22}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
    )
    medians = {name: median_run(r) for name, r in runs.items()}
    for name, r in medians.items():
        print(
            f"{name:<22}{r['tokens']:>8}{r['seconds']:>9.2f}{r['tokens_per_s']:>10.0f}"
            f"{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}"
        )
    ratio = medians[SERVE]["tokens_per_s"] / medians[ENGINE]["tokens_per_s"]
    verdict = "meets" if ratio >= 0.9 else "misses"
    print(f"\nserve / engine tokens/s = {ratio:.2f} ({verdict} the ≥ 0.90 goal)")


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median tokens/s."""
    return sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]


if __name__ == "__main__":
    main()
