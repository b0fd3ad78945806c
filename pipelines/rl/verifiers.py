"""Verifiable reward rules, usable as ``--reward-fn pipelines.rl.verifiers:NAME``.

Each is ``fn(prompt: str, response: str) -> float``: plain Python, no model, no Ray.
"""

from __future__ import annotations

import operator
import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ARITHMETIC = re.compile(r"(-?\d+)\s*([+\-*×x])\s*(-?\d+)")
_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "×": operator.mul,
    "x": operator.mul,
}


def final_number(text: str) -> float | None:
    """The last number written in ``text`` (GSM8K-style answers end with it), or None."""
    found = _NUMBER.findall(text.replace(",", ""))
    return float(found[-1]) if found else None


def arithmetic_answer(prompt: str) -> float | None:
    """The value of the first ``a op b`` in the prompt (op: + - * × x), or None."""
    match = _ARITHMETIC.search(prompt)
    if not match:
        return None
    a, op, b = match.groups()
    return float(_OPS[op](int(a), int(b)))


def arithmetic_exact_match(prompt: str, response: str) -> float:
    """1.0 when the response's final number equals the prompt's ``a op b``, else 0.0."""
    expected, given = arithmetic_answer(prompt), final_number(response)
    return float(expected is not None and given is not None and abs(expected - given) < 1e-9)


def digit_fraction(prompt: str, response: str) -> float:
    """Share of the response's non-space characters that are digits: a task tiny models learn."""
    chars = [c for c in response if not c.isspace()]
    return sum(c.isdigit() for c in chars) / len(chars) if chars else 0.0
