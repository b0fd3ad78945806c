"""``actors.engine``: the vLLM engine natal builds, here in the test process itself."""

from __future__ import annotations

import sys

import torch
from tiny_model import build_tiny_model

from actors.engine import engine_kwargs, make_llm


def test_engine_starts_in_a_process_that_loaded_numba_kernels(tmp_path) -> None:
    # natal's MinHash kernels load llvmlite, whose library wrapper used to break vLLM's
    # start-up scan of every module (AttributeError: '_lib_fn_wrapper' ... 'get')
    from pipelines.data.dedup import minhash

    a, b = minhash.permutations(8, 1)
    assert minhash.signatures(["one two three four five six"], 5, a, b).shape == (1, 8)
    assert "llvmlite.binding.ffi" in sys.modules
    from vllm import SamplingParams

    llm = make_llm(str(build_tiny_model(tmp_path / "tiny")), kv_cache_mb=32, max_model_len=128)
    params = SamplingParams(max_tokens=4, temperature=0, logprobs=0)  # as the rollouts ask
    (out,) = llm.generate([[5, 6, 7]], params, use_tqdm=False)
    assert len(out.outputs[0].token_ids) == len(out.outputs[0].logprobs) == 4
    assert torch._dynamo.config.disable  # no inductor build of vLLM's sampler helpers on CPU
    # and the kernels still work afterwards
    assert (minhash.signatures(["one two three four five six"], 5, a, b) != minhash.EMPTY).all()


def test_cpu_engine_is_in_process_eager_fp32_with_an_explicit_kv_cache() -> None:
    kwargs = engine_kwargs("/models/m", kv_cache_mb=64, max_model_len=256, seed=3)
    assert kwargs["model"] == "/models/m" and kwargs["max_model_len"] == 256
    assert kwargs["seed"] == 3  # overrides win
    assert kwargs["dtype"] == "float32" and kwargs["enforce_eager"] is True
    assert kwargs["kv_cache_memory_bytes"] == 64 << 20
