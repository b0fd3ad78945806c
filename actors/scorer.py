"""Reward actor: scores (prompt, response) pairs with a reward model, rule functions, or both.

A rule is ``module:function`` with the signature ``function(prompt: str, response: str) ->
float``, importable from ``PYTHONPATH``. Scores of several sources are summed with weights. A
rule that raises or returns NaN/inf does not stop the loop: that sample's score is NaN, the
error is counted, and the loop leaves the sample out of training.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from cluster.config.errors import ConfigError

RewardFn = Callable[[str, str], float]


def load_reward_fn(spec: str) -> RewardFn:
    """Import ``module:function``; a clear error if it is not there or not callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"reward function {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"reward function {spec!r}: cannot import {module_name}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"reward function {spec!r}: {module_name} has no function {attr}")
    return fn


def call_reward_fn(fn: RewardFn, prompt: str, response: str) -> tuple[float, str | None]:
    """The rule's score as a float, or NaN with the reason it could not be had."""
    try:
        value = float(fn(prompt, response))
    except Exception as exc:  # a user rule: any failure is counted, not fatal
        return math.nan, f"raised {type(exc).__name__}"
    if not math.isfinite(value):
        return math.nan, "not finite"
    return value, None


class RewardScorer:
    """Batch scorer; wrapped as a Ray actor by :func:`reward_actor`."""

    def __init__(
        self,
        reward_model: str | None = None,
        reward_fns: list[str] | None = None,
        model_weight: float = 1.0,
        fn_weight: float = 1.0,
        max_length: int = 1024,
        search_path: list[str] | None = None,
    ) -> None:
        """``search_path``: the driver's ``sys.path``, so rules importable there import here."""
        for entry in reversed(search_path or []):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        if not reward_model and not reward_fns:
            raise ConfigError("RLHF needs a reward: --reward-model DIR and/or --reward-fn mod:fn")
        self.fns = [(spec, load_reward_fn(spec)) for spec in reward_fns or []]
        self.model_weight, self.fn_weight, self.max_length = model_weight, fn_weight, max_length
        self.model = self.tokenizer = None
        if reward_model:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(reward_model)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                reward_model, num_labels=1, dtype=torch.float32
            ).eval()
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.errors: Counter = Counter()

    def _model_scores(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Scores encoded exactly as ``natal reward`` trained: chat template, end kept."""
        import torch

        from pipelines.posttrain.sft_data import as_row, collate, model_inputs, response_example

        scores = [math.nan] * len(prompts)
        rows = []
        for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
            conversation = [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": response},
            ]
            try:
                rows.append(
                    (i, as_row(response_example(self.tokenizer, conversation, self.max_length)))
                )
            except ValueError:  # nothing of the answer survives the template: NaN, counted
                continue
        with torch.no_grad():
            for lo in range(0, len(rows), 32):
                part = rows[lo : lo + 32]
                batch = collate([row for _, row in part], self.model.config.pad_token_id)
                values = self.model(**model_inputs(batch)).logits[:, 0].float().tolist()
                for (i, _), value in zip(part, values, strict=True):
                    scores[i] = value
        return scores

    def score(self, prompts: list[str], responses: list[str]) -> dict[str, Any]:
        """``{"scores": [...], "errors": {reason: n}}``; NaN marks a sample to leave out."""
        totals = [0.0] * len(prompts)
        errors: Counter = Counter()
        if self.model is not None:
            for i, value in enumerate(self._model_scores(prompts, responses)):
                if math.isnan(value):
                    errors["reward_model unscorable"] += 1
                totals[i] += self.model_weight * value
        for spec, fn in self.fns:
            for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
                value, reason = call_reward_fn(fn, prompt, response)
                if reason:
                    errors[f"{spec} {reason}"] += 1
                totals[i] += self.fn_weight * value
        self.errors.update(errors)
        return {"scores": totals, "errors": dict(errors)}


def reward_actor(num_cpus: float = 1, num_gpus: float = 0):
    import ray

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(RewardScorer)
