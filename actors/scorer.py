"""Reward actor: scores prompts' answers with a reward model, rule functions, or both.

A prompt is a row of the prompt set (``prompt``, chat ``messages`` and any other fields, such
as a task's ``answer``) or a plain string. The reward model reads the whole conversation —
the row's messages and the answer — through its own chat template. A rule is
``module:function``, importable from ``PYTHONPATH``, called as ``function(prompt, response,
**fields)``: it gets the row's other fields it names (or all of them with ``**kwargs``), and a
two-argument function keeps working. Scores of several sources are summed with weights. A rule
that raises, returns NaN/inf or needs a field its row lacks does not stop the loop: that
sample's score is NaN, the reason is counted, and the loop leaves the sample out of training.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cluster.config.errors import ConfigError

Prompt = str | dict[str, Any]
ROW_TEXT = ("prompt", "messages")  # what a rule gets as its first argument, not as a field


@dataclass(frozen=True)
class RewardRule:
    """A rule function and the row fields it takes beyond ``(prompt, response)``."""

    spec: str
    fn: Callable[..., float]
    fields: tuple[str, ...] = ()  # named parameters after the first two
    required: frozenset[str] = frozenset()  # those without a default
    any_field: bool = False  # it takes **kwargs: every field


def load_reward_fn(spec: str) -> RewardRule:
    """Import ``module:function``; a clear error if it is not there, not callable, or cannot
    be called as ``(prompt, response, **fields)``."""
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
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    extra = positional[2:] + [p for p in params if p.kind == p.KEYWORD_ONLY]
    if (len(positional) < 2 and not varargs) or any(p.kind == p.POSITIONAL_ONLY for p in extra):
        raise ConfigError(
            f"reward function {spec!r} takes {inspect.signature(fn)}: it must take "
            "(prompt, response) and may name fields of the prompt row after them"
        )
    return RewardRule(
        spec,
        fn,
        tuple(p.name for p in extra),
        frozenset(p.name for p in extra if p.default is p.empty),
        any(p.kind == p.VAR_KEYWORD for p in params),
    )


def prompt_row(prompt: Prompt) -> dict[str, Any]:
    """A plain string as a one-turn row; a row as it is."""
    if isinstance(prompt, str):
        return {"prompt": prompt, "messages": [{"role": "user", "content": prompt}]}
    return prompt


def call_reward_fn(
    rule: RewardRule, row: dict[str, Any], response: str
) -> tuple[float, str | None]:
    """The rule's score as a float, or NaN with the reason it could not be had."""
    fields = {k: v for k, v in row.items() if k not in ROW_TEXT}
    kwargs = fields if rule.any_field else {k: fields[k] for k in rule.fields if k in fields}
    missing = sorted(rule.required - kwargs.keys())
    if missing:
        return math.nan, f"row lacks field {missing[0]!r}"
    try:
        value = float(rule.fn(row["prompt"], response, **kwargs))
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
        self.rules = [load_reward_fn(spec) for spec in reward_fns or []]
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
            self._check_template(reward_model)
        self.errors: Counter = Counter()

    def _check_template(self, reward_model: str) -> None:
        """Fail at start, naming the model, if its chat template cannot frame an answer."""
        from pipelines.posttrain.sft_data import encode_conversation

        probe = [
            {"role": "user", "content": "question"},
            {"role": "assistant", "content": "answer"},
        ]
        try:
            encode_conversation(self.tokenizer, probe)
        except ConfigError as exc:
            raise ConfigError(f"reward model {reward_model}: {exc}") from None

    def _model_scores(self, rows: list[dict[str, Any]], responses: list[str]) -> list[float]:
        """Scores of whole conversations, encoded exactly as ``natal reward`` trained: chat
        template, end kept."""
        import torch

        from pipelines.posttrain.sft_data import as_row, collate, model_inputs, response_example

        scores = [math.nan] * len(rows)
        encoded = []
        for i, (row, response) in enumerate(zip(rows, responses, strict=True)):
            conversation = [*row["messages"], {"role": "assistant", "content": response}]
            try:
                encoded.append(
                    (i, as_row(response_example(self.tokenizer, conversation, self.max_length)))
                )
            except ValueError:  # nothing of the answer survives the template: NaN, counted
                continue
        with torch.no_grad():
            for lo in range(0, len(encoded), 32):
                part = encoded[lo : lo + 32]
                batch = collate([row for _, row in part], self.model.config.pad_token_id)
                values = self.model(**model_inputs(batch)).logits[:, 0].float().tolist()
                for (i, _), value in zip(part, values, strict=True):
                    scores[i] = value
        return scores

    def score(self, prompts: list[Prompt], responses: list[str]) -> dict[str, Any]:
        """``{"scores": [...], "errors": {reason: n}}``; NaN marks a sample to leave out."""
        rows = [prompt_row(p) for p in prompts]
        totals = [0.0] * len(rows)
        errors: Counter = Counter()
        if self.model is not None:
            for i, value in enumerate(self._model_scores(rows, responses)):
                if math.isnan(value):
                    errors["reward_model unscorable"] += 1
                totals[i] += self.model_weight * value
        for rule in self.rules:
            for i, (row, response) in enumerate(zip(rows, responses, strict=True)):
                value, reason = call_reward_fn(rule, row, response)
                if reason:
                    errors[f"{rule.spec} {reason}"] += 1
                totals[i] += self.fn_weight * value
        self.errors.update(errors)
        return {"scores": totals, "errors": dict(errors)}


def reward_actor(num_cpus: float = 1, num_gpus: float = 0):
    import ray

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(RewardScorer)
