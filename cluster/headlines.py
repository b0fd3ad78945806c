"""One line per finished stage, with the figures a newcomer looks for (``natal run``'s output).

Each function reads the stats dict its stage returned (the same dict its manifest keeps) and
names what the stage did: counts first, then the one figure that says whether it worked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Stats = dict[str, Any]


def _n(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


def _counts(stats: Stats) -> dict[str, Any]:
    return stats.get("counts") or {}


def _change(stats: Stats, key: str) -> str:
    """``before → after`` of a held-out figure (the loop measures it before step 1)."""
    before = stats.get(f"{key}_before")
    return f"{_n(before)} → {_n(stats.get(key))}" if before is not None else _n(stats.get(key))


def _top(breakdown: dict[str, int] | None, k: int = 3) -> str:
    items = sorted((breakdown or {}).items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"{name} {count:,}" for name, count in items) or "none"


def crawl(stats: Stats) -> str:
    c = _counts(stats)
    return (
        f"{_n(c.get('pages'))} pages ({_size(c.get('bytes', 0))}) at "
        f"{stats.get('pages_per_second', 0):.1f} pages/s, {_n(c.get('retries', 0))} retries"
    )


def ingest(stats: Stats) -> str:
    c = _counts(stats)
    chars = stats.get("characters") or c.get("characters")
    text = f", {_size(chars)} of text" if chars else ""
    return (
        f"{_n(c.get('documents'))} documents from {_n(c.get('records_read'))} records{text}, "
        f"{_n(c.get('errors', 0))} errors counted and skipped"
    )


def filter_(stats: Stats) -> str:
    c = _counts(stats)
    removed = (stats.get("breakdown") or {}).get("removed_by_reason")
    return (
        f"kept {_n(c.get('kept'))} / removed {_n(c.get('removed'))}; top reasons: {_top(removed)}"
    )


def dedup(stats: Stats) -> str:
    c = _counts(stats)
    return (
        f"{_n(c.get('exact_duplicates'))} exact + {_n(c.get('fuzzy_duplicates'))} fuzzy "
        f"duplicates removed in {_n(c.get('clusters'))} clusters; kept {_n(c.get('kept'))}"
    )


def tokenizer(stats: Stats) -> str:
    c = _counts(stats)
    return f"vocab {_n(stats.get('vocab_size'))} from {_n(c.get('documents'))} documents"


def tokenize(stats: Stats) -> str:
    c = _counts(stats)
    mix = (stats.get("breakdown") or {}).get("mixture_achieved_percent") or {}
    mixture = ", ".join(f"{k} {v:.0f}%" for k, v in mix.items()) or "n/a"
    return (
        f"{_n(c.get('train_tokens'))} train + {_n(c.get('val_tokens'))} val tokens "
        f"(seq {stats.get('seq_len')}); mixture {mixture}"
    )


def pretrain(stats: Stats) -> str:
    return (
        f"{_n(_counts(stats).get('tokens'))} tokens at {stats.get('tokens_per_s', 0):,.0f} "
        f"tokens/s, MFU {100 * stats.get('mfu', 0):.1f}%, loss {_n(stats.get('first_loss'))} → "
        f"{_n(stats.get('final_loss'))}, val perplexity {_change(stats, 'val_ppl')}"
    )


def conversations(stats: Stats) -> str:
    c = _counts(stats)
    return (
        f"{_n(c.get('sft'))} SFT conversations, {_n(c.get('preferences'))} preference pairs, "
        f"{_n(c.get('prompts'))} held-out prompts"
    )


def sft(stats: Stats) -> str:
    return (
        f"val loss {_change(stats, 'val_loss')} (train {_n(stats.get('final_loss'))}) "
        f"after {_n(_counts(stats).get('steps', stats.get('steps')))} steps"
    )


def reward(stats: Stats) -> str:
    return (
        f"held-out accuracy {_change(stats, 'val_accuracy')} on "
        f"{_n(_counts(stats).get('val_pairs'))} pairs (chance 0.5)"
    )


def judge(stats: Stats) -> str:
    return str(stats["skipped"]) if stats.get("skipped") else reward(stats)


def rlhf(stats: Stats) -> str:
    return (
        f"reward {_n(stats.get('reward_first'))} → {_n(stats.get('reward_last'))} over "
        f"{_n(_counts(stats).get('steps'))} steps, KL {_n(stats.get('kl_last'))}"
    )


def rlhf_verdict(stats: Stats) -> str | None:
    """The plain sentence a reader needs unless every independent judge's 95% interval of
    RLHF's held-out win rate over SFT lies above 0.5."""
    judges = [j for j in stats.get("judges", []) if j.get("independent")]
    if not judges:
        return "no independent judge: the only one is the reward RLHF trained against"
    intervals = {j["name"]: _interval(j.get("win_rate_ci95")) for j in judges}
    wins = [n for n, (low, _) in intervals.items() if low is not None and low > 0.5]
    losses = [n for n, (_, high) in intervals.items() if high is not None and high < 0.5]
    if len(wins) == len(judges):
        return None
    if wins and losses:
        return (
            f"the independent judges disagree: {', '.join(wins)} prefers RLHF, "
            f"{', '.join(losses)} prefers SFT — the policy learned what pleases reward "
            "models more than what the other judge rewards (reward over-optimization)"
        )
    if len(losses) == len(judges):
        return "RLHF lost to SFT on held-out prompts by every independent judge"
    unclear = [n for n in intervals if n not in wins and n not in losses]
    if wins and unclear:
        return (
            f"{', '.join(wins)} prefers RLHF, but {', '.join(unclear)} cannot tell it from SFT "
            "on held-out prompts (its interval holds 0.5)"
        )
    return (
        f"RLHF is not distinguishable from SFT by {', '.join(unclear or losses)} on held-out "
        "prompts: with a weak reward model and a few steps on a tiny model, the update is "
        "within noise"
    )


def _interval(value: Any) -> tuple[float | None, float | None]:
    """The ``"low–high"`` text of the eval summary, or a ``[low, high]`` list."""
    if isinstance(value, str) and "–" in value:
        value = value.split("–")
    if isinstance(value, list | tuple) and len(value) == 2:
        return float(value[0]), float(value[1])
    return None, None


def evaluate(stats: Stats) -> str:
    rates = [
        f"{j['name']}{'' if j.get('independent') else ' (not independent)'} "
        f"{_n(j.get('win_rate'))} ({j.get('win_rate_ci95')})"
        for j in stats.get("judges", [])
    ]
    line = (
        f"{_n(_counts(stats).get('prompts'))} held-out prompts, RLHF vs SFT win rate "
        f"(95% CI) by {', '.join(rates) or '?'}"
    )
    verdict = rlhf_verdict(stats)
    return f"{line}; {verdict}" if verdict else line


def serve(stats: Stats) -> str:
    reply = " ".join(str(stats.get("reply", "")).split())
    return f"ready in {_n(stats.get('ready_s'))} s at {stats.get('url')}; {stats.get('question')!r} → {reply[:80]!r}"


def report(stats: Stats) -> str:
    return str(stats.get("report"))


HEADLINES: dict[str, Callable[[Stats], str]] = {
    "crawl": crawl,
    "ingest": ingest,
    "filter": filter_,
    "dedup": dedup,
    "tokenizer": tokenizer,
    "tokenize": tokenize,
    "pretrain": pretrain,
    "conversations": conversations,
    "sft": sft,
    "reward": reward,
    "judge": judge,
    "rlhf": rlhf,
    "eval": evaluate,
    "serve": serve,
    "report": report,
}


def headline(stage: str, stats: Stats | None) -> str:
    """The stage's one line; a stage without its own function shows its counts."""
    stats = stats or {}
    if stage in HEADLINES:
        return HEADLINES[stage](stats)
    return ", ".join(f"{k} {_n(v)}" for k, v in _counts(stats).items())
