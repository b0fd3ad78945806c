"""Conversations, preferences and prompts derived from the demo crawl (Python's docs).

The demo has no human conversations or raters, so it makes them from the curated documents:
- SFT: "What is the Python module X for?" answered with the opening of X's documentation;
- preferences: for each question, candidate answers ranked by a **rule-based judge that
  stands in for human raters** (word overlap with the asked module's own documentation),
  written in the rating page's export format so that ``natal reward`` reads it unchanged;
- RLHF prompts: questions held out from SFT (``natal rlhf`` holds part of them out again, for
  ``natal eval``); the judge rule, :func:`rater_score`, can score their answers there.

Pure functions over document rows; the lifecycle writes their output as JSONL files.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

JUDGE = "rule-judge (stands in for human raters: word overlap with the module's docs)"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")
_MODULE_PAGE = re.compile(r"/([A-Za-z_][\w.]*)\.html$")
# pages of modules without a docstring open with inherited method docs: not a description
_NO_DESCRIPTION = ("Initialize self", "See help(type", "Create and return a new object")


def module_name(url: str) -> str | None:
    """``http://host/json.decoder.html`` → ``json.decoder``; None for other pages."""
    match = _MODULE_PAGE.search(url or "")
    return match.group(1) if match else None


def summary(text: str, max_words: int = 40) -> str:
    """The first sentences of a document's text, at most ``max_words`` words."""
    words = " ".join(text.split()).split(" ")
    cut = " ".join(words[:max_words])
    end = max(cut.rfind(". "), cut.rfind(".\n"))
    return cut[: end + 1] if end > len(cut) // 3 else cut


def question(module: str) -> str:
    return f"What is the Python module {module} for?"


def qa_items(documents: list[dict[str, Any]], min_words: int = 20) -> list[dict[str, str]]:
    """One question/answer per module page with enough text, sorted by module name."""
    items = {}
    for doc in documents:
        name = module_name(doc.get("url", ""))
        text = doc.get("text") or ""
        answer = summary(text)
        if any(marker in answer for marker in _NO_DESCRIPTION):
            continue
        if name and len(text.split()) >= min_words and name not in items:
            items[name] = {"module": name, "prompt": question(name), "answer": answer}
    return [items[k] for k in sorted(items)]


def overlap_score(answer: str, reference: str) -> float:
    """F1 of word overlap between an answer and the reference docs (the stand-in judge)."""
    a = Counter(w.lower() for w in _WORD.findall(answer))
    r = Counter(w.lower() for w in _WORD.findall(reference))
    common = sum((a & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def rater_score(prompt: str, response: str, answer: str) -> float:
    """The stand-in raters' judgement as a reward rule: overlap with the reference answer
    (``lifecycle.judge_fn`` of the demo: the policy never trains against it)."""
    return overlap_score(response, answer)


def split_items(
    items: list[dict[str, str]], seed: int = 0, prompt_fraction: float = 0.35
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(SFT items, held-out RLHF/eval items), a seeded split."""
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    held = max(1, int(len(shuffled) * prompt_fraction)) if len(shuffled) > 1 else 0
    return shuffled[held:], shuffled[:held]


def sft_rows(items: list[dict[str, str]]) -> list[dict[str, str]]:
    """``{"prompt", "response"}`` rows (a format ``natal sft`` detects)."""
    return [{"prompt": it["prompt"], "response": it["answer"]} for it in items]


def preference_rows(items: list[dict[str, str]], seed: int = 0) -> list[dict[str, Any]]:
    """Rating-export rows: each question's candidates ranked best first by the judge.

    Candidates: the module's own summary, its first eight words, a summary of another module,
    and the question's words echoed back — answers a rater would rank about in that order.
    """
    rng = random.Random(seed)
    rows = []
    for i, item in enumerate(items):
        other = items[(i + 1 + rng.randrange(max(len(items) - 1, 1))) % len(items)]
        clipped = " ".join(item["answer"].split()[:8])
        echo = f"{item['module']} {item['prompt']}"
        candidates = [item["answer"], clipped, other["answer"], echo]
        candidates = list(dict.fromkeys(c for c in candidates if c.strip()))
        if len(candidates) < 2:
            continue
        ranked = sorted(candidates, key=lambda c: -overlap_score(c, item["answer"]))
        rows.append(
            {
                "prompt": item["prompt"],
                "responses": ranked,
                "ties": [],
                "rater": JUDGE,
                "source": "demo",
            }
        )
    return rows


def prompt_rows(items: list[dict[str, str]]) -> list[dict[str, str]]:
    """RLHF prompt rows; ``answer`` is kept for rules and for the report."""
    return [{"prompt": it["prompt"], "answer": it["answer"]} for it in items]
