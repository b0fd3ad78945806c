"""Reward rules of the tests (some misbehave on purpose), imported by the reward actor."""


def flaky(prompt: str, response: str) -> float:
    """Raises for a fifth of the answers, returns NaN for another fifth, 0 otherwise."""
    kind = len(response) % 5
    if kind == 0:
        raise ValueError("this rule fails on purpose")
    return float("nan") if kind == 1 else 0.0


def says_target(prompt: str, response: str, target: str) -> float:
    """1 when the answer contains the row's ``target`` field: a rule that needs the row."""
    return float(target in response)
