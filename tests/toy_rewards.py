"""Reward rules that misbehave on purpose, imported by the reward actor in tests."""


def flaky(prompt: str, response: str) -> float:
    """Raises for a fifth of the answers, returns NaN for another fifth, 0 otherwise."""
    kind = len(response) % 5
    if kind == 0:
        raise ValueError("this rule fails on purpose")
    return float("nan") if kind == 1 else 0.0
