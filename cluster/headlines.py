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


def rlhf(stats: Stats) -> str:
    return (
        f"reward {_n(stats.get('reward_first'))} → {_n(stats.get('reward_last'))} over "
        f"{_n(_counts(stats).get('steps'))} steps, KL {_n(stats.get('kl_last'))}"
    )


def rlhf_verdict(comparison: Stats) -> str | None:
    """The plain sentence a reader needs when RLHF did not beat SFT on held-out prompts."""
    policy, baseline = comparison.get("reward_policy"), comparison.get("reward_baseline")
    if policy is None or baseline is None or policy > baseline:
        return None
    return (
        "RLHF did not beat SFT on held-out prompts: with a weak reward model and a few GRPO "
        "steps on a tiny model, the update is within noise (more steps and data would be needed)"
    )


def evaluate(stats: Stats) -> str:
    line = (
        f"held-out prompts: RLHF {_n(stats.get('reward_policy'))} vs SFT "
        f"{_n(stats.get('reward_baseline'))} mean reward, win rate {_n(stats.get('win_rate'))}"
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
