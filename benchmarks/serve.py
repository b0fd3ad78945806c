"""``natal serve`` against its own engine: tokens/s and p50/p99 latency, same model, same load.

Peer: the same vLLM engine (``actors.engine.make_llm``) driven directly in a child process,
every request added at once and stepped to completion. ``natal serve`` runs as a subprocess
(its own local Ray cluster, the Serve proxy, one replica) and the same requests go to it at
once through the official ``openai`` client. Both fix the output length (``ignore_eos``), so
they generate the same number of tokens. The two alternate for ``--rounds`` rounds and the
medians are compared, so that load from other processes hits both alike. Goal: serve ≥ 0.9×
the engine's tokens/s.

The HTTP path (client, Serve proxy, replica) costs a fixed few milliseconds of CPU per
request on this 2-core machine, whatever the model, so the ratio depends on how long the
engine takes per request: the default run builds natal's ``small`` preset (~86M parameters)
and a 2.4M-parameter ``micro`` model that shows the fixed cost at its largest.

    .venv/bin/python benchmarks/serve.py                        # small and micro, built here
    .venv/bin/python benchmarks/serve.py --model runs/demo/rlhf/final --max-tokens 128
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ENGINE, SERVE = "vLLM engine, direct", "natal serve (HTTP)"
MAX_MODEL_LEN = 512


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def prompts(n: int) -> list[str]:
    return [f"Request {i}: the quick brown fox jumps over the lazy dog." for i in range(n)]


_LLM: dict[str, object] = {}  # the child process's engine, built on its first round


def run_engine(model: str, requests: int, max_tokens: int, kv_mb: int) -> dict[str, float]:
    """Every request into the engine at t0; latency = when each one finished."""
    from vllm import SamplingParams

    from actors.engine import make_llm

    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=1.0, seed=0)
    if model not in _LLM:
        _LLM[model] = make_llm(model, kv_cache_mb=kv_mb, max_model_len=MAX_MODEL_LEN)
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


async def _warm_client(base: str, model: str, requests: int) -> Any:
    """One official ``openai`` client for every round, its connection pool already open.

    A load generator keeps its connections: ``requests`` concurrent warm-up calls open one
    per request, so the rounds measure serving, not TCP and HTTP set-up.
    """
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=600)
    await asyncio.gather(
        *(
            client.completions.create(model=model, prompt="warm up", max_tokens=2)
            for _ in range(requests)
        )
    )
    return client


async def _load(client: Any, model: str, requests: int, max_tokens: int) -> dict[str, float]:
    extra = {"ignore_eos": True}
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
    return summarize(sum(t for _, t in results), seconds, [lat for lat, _ in results])


@contextmanager
def natal_serve(model: str, kv_mb: int) -> Iterator[str]:
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
        f"serve.kv_cache_mb={kv_mb}",
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


def bench_model(kind: str) -> str:
    """A random-init Llama with natal's tokenizer, built here (no downloads).

    ``small``: natal's ``small`` preset (GPT-2 small's shape, ~86M parameters with this
    vocabulary), the smallest model anyone would serve. ``micro``: 2.4M parameters, where a
    decoding step takes ~10 ms and the HTTP path's fixed cost per request shows most.
    """
    from common import build_model  # benchmarks/common.py, beside this script
    from tiny_model import build_tiny_model

    out = Path(tempfile.mkdtemp(prefix="natal-bench-")) / f"bench-{kind}"
    if kind == "micro":
        return str(build_tiny_model(out, hidden_size=256, num_layers=4))
    return build_model(out, prompts(200), vocab_size=512, preset=kind, max_seq_len=MAX_MODEL_LEN)


def parameters_m(model: str) -> float:
    """Millions of parameters, from the safetensors headers."""
    import math

    from safetensors import safe_open

    total = 0
    for path in Path(model).glob("*.safetensors"):
        with safe_open(str(path), framework="np") as f:
            total += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    return total / 1e6


def kv_cache_mb(model: str, requests: int, max_tokens: int) -> int:
    """KV cache for every request at once (prompts ≤ 32 tokens), with a quarter to spare."""
    import json

    cfg = json.loads((Path(model) / "config.json").read_text())
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    per_token = cfg["num_hidden_layers"] * 2 * kv_heads * head_dim * 4  # fp32 K and V
    return max(256, int(1.25 * requests * (max_tokens + 32) * per_token) >> 20)


def compare(model: str, requests: int, max_tokens: int, rounds: int) -> dict[str, dict]:
    """Alternate the direct engine and ``natal serve`` on one model; median round of each."""
    kv_mb = kv_cache_mb(model, requests, max_tokens)
    print(
        f"\nmodel {model} ({parameters_m(model):.1f}M parameters): {requests} requests at once"
        f" × {max_tokens} tokens, KV cache {kv_mb} MB",
        flush=True,
    )
    runs: dict[str, list[dict[str, float]]] = {ENGINE: [], SERVE: []}
    name = Path(model).name
    with (
        ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as child,
        natal_serve(model, kv_mb) as url,
        asyncio.Runner() as runner,
    ):
        client = runner.run(_warm_client(url, name, requests))
        for _ in range(rounds):
            engine = child.submit(run_engine, model, requests, max_tokens, kv_mb).result()
            runs[ENGINE].append(engine)
            served = runner.run(_load(client, name, requests, max_tokens))
            runs[SERVE].append(served)
            print(
                f"round: engine {engine['tokens_per_s']:.0f} tok/s, serve "
                f"{served['tokens_per_s']:.0f} tok/s",
                flush=True,
            )
    return {path: median_run(r) for path, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a model directory (default: build --builds here)")
    parser.add_argument(
        "--builds", default="small,micro", help="models to build: small (preset), micro"
    )
    parser.add_argument("--requests", type=int, default=64, help="requests sent at once")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each path")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # Ray sets OMP_NUM_THREADS to the replica's num_cpus (serve.num_cpus: 1); give the direct
    # engine the same, or the two runs use different thread counts
    os.environ["OMP_NUM_THREADS"] = "1"
    models = [args.model] if args.model else [bench_model(k) for k in args.builds.split(",")]
    results = {m: compare(m, args.requests, args.max_tokens, args.rounds) for m in models}
    print(
        f"\n{'model':<16}{'path (median)':<22}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}"
    )
    for model, medians in results.items():
        for path, r in medians.items():
            print(
                f"{Path(model).name:<16}{path:<22}{r['tokens']:>8}{r['seconds']:>9.2f}"
                f"{r['tokens_per_s']:>10.0f}{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}"
            )
    print()
    for model, medians in results.items():
        ratio = medians[SERVE]["tokens_per_s"] / medians[ENGINE]["tokens_per_s"]
        verdict = "meets" if ratio >= 0.9 else "misses"
        extra_ms = 1000 * (medians[SERVE]["seconds"] - medians[ENGINE]["seconds"]) / args.requests
        print(
            f"{Path(model).name}: serve / engine tokens/s = {ratio:.2f} ({verdict} the ≥ 0.90"
            f" goal); the HTTP path adds {extra_ms:.1f} ms of wall time per request"
        )


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median tokens/s."""
    return sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]


if __name__ == "__main__":
    main()
