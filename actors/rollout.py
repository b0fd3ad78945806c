"""Rollout actor: a vLLM engine that samples n answers per prompt with their token log-probs.

It reports the policy weight version each sample was generated with, and takes new weights
from the learners in place (no engine restart): on CPU through the in-process worker's
``reload_weights``; elsewhere through ``collective_rpc("reload_weights", weights_path=...)``.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Sample:
    """One generated answer: which prompt, its tokens, their log-probs, the weights used."""

    prompt_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    weight_version: int


class RolloutWorker:
    """The engine and its weight version; wrapped as a Ray actor by :func:`rollout_actor`."""

    def __init__(
        self,
        model_dir: str,
        kv_cache_mb: int = 256,
        max_model_len: int | None = None,
        seed: int = 0,
        cpu_bind: str | None = None,
        weight_version: int = 0,
    ) -> None:
        if cpu_bind is not None:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_bind
        from actors.engine import make_llm

        started = time.perf_counter()
        # the sampled tokens' log-probs after temperature and top-p (vLLM's default is the raw
        # model's): the behaviour policy the learner's importance ratios divide by
        self.llm = make_llm(
            model_dir, kv_cache_mb, max_model_len, seed=seed, logprobs_mode="processed_logprobs"
        )
        self.start_seconds = time.perf_counter() - started
        self.weight_version = weight_version  # a resumed loop starts at its checkpoint's step
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.vocab_size = self.llm.llm_engine.model_config.get_vocab_size()

    def info(self) -> dict[str, Any]:
        return {
            "weight_version": self.weight_version,
            "max_model_len": self.max_model_len,
            "vocab_size": self.vocab_size,
            "start_seconds": self.start_seconds,
            "pid": os.getpid(),
        }

    def generate(
        self,
        prompts: list[tuple[int, list[int]]],
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[Sample]:
        """Sample ``n`` answers for each ``(prompt_index, prompt token ids)``."""
        from vllm import SamplingParams

        params = SamplingParams(
            n=n,
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            logprobs=0,
            seed=seed,
        )
        inputs = [{"prompt_token_ids": ids} for _, ids in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        samples = []
        for (index, ids), output in zip(prompts, outputs, strict=True):
            for completion in output.outputs:
                logprobs = [
                    entry[token].logprob
                    for token, entry in zip(
                        completion.token_ids, completion.logprobs or [], strict=True
                    )
                ]
                samples.append(
                    Sample(
                        prompt_index=index,
                        prompt_ids=list(ids),
                        response_ids=list(completion.token_ids),
                        logprobs=logprobs,
                        text=completion.text,
                        finish_reason=str(completion.finish_reason),
                        weight_version=self.weight_version,
                    )
                )
        return samples

    def load_weights(self, state: dict[str, np.ndarray], version: int) -> float:
        """Replace the engine's weights by ``state`` (HF names, numpy arrays); returns seconds."""
        import torch

        started = time.perf_counter()
        tensors = {name: torch.from_numpy(np.asarray(array)) for name, array in state.items()}
        self._reload(tensors)
        self.weight_version = version
        return time.perf_counter() - started

    def join_weight_group(
        self, host: str, port: int, rank: int, world: int, backend: str, timeout_s: float
    ) -> int:
        """Join the learner's broadcast group (see actors/weights) as ``rank``."""
        from actors.weights import make_group

        self.weight_group = make_group(backend, host, port, rank, world, timeout_s)
        return rank

    def receive_weights(self, spec: list[tuple[str, tuple[int, ...], str]], version: int) -> float:
        """Receive the policy broadcast by the learner and load it; returns seconds."""
        import torch

        from actors.weights import receive_state

        started = time.perf_counter()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._reload(receive_state(self.weight_group, spec, device))
        self.weight_version = version
        return time.perf_counter() - started

    def _reload(self, tensors: dict[str, Any]) -> None:
        from actors.engine import engine_worker

        try:
            worker = engine_worker(self.llm)
        except AttributeError:
            worker = None
        if worker is not None:
            worker.reload_weights(weights_iterator=iter(tensors.items()), is_checkpoint_format=True)
            return
        # multi-process engine (GPU): hand the weights over as a safetensors checkpoint
        from safetensors.torch import save_file

        with tempfile.TemporaryDirectory(prefix="natal-weights-") as tmp:
            save_file(tensors, os.path.join(tmp, "model.safetensors"))
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": tmp})

    def greedy(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy answers (for checks that the engine matches the learner after a sync)."""
        samples = self.generate(list(enumerate(prompts)), 1, max_new_tokens, temperature=0.0)
        return [s.response_ids for s in samples]


def rollout_actor(num_cpus: float = 1, num_gpus: float = 0, max_restarts: int = 3):
    """The Ray actor class of :class:`RolloutWorker`, restartable after a crash."""
    import ray

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts)(
        RolloutWorker
    )
