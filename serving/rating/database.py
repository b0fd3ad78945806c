"""Human ratings, kept durably in SQLite, and their export as preference data.

WAL mode with ``synchronous=FULL``: a submitted rating is on disk before the page hears back,
so a crash or restart loses nothing already submitted, and several raters (several
connections) write at once. One row per rating: rater, time, prompt id, ranking. Raters sign
in with a token issued by ``natal rate --add-rater``; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    name TEXT PRIMARY KEY, token_sha256 TEXT UNIQUE NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, prompt TEXT NOT NULL,
    responses TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL REFERENCES raters(name),
    item_id TEXT NOT NULL REFERENCES items(id), created REAL NOT NULL,
    ranking TEXT NOT NULL, ties TEXT NOT NULL, all_bad INTEGER NOT NULL,
    UNIQUE (rater, item_id));
"""


class RatingError(ValueError):
    """A submission that cannot be stored as it is (the page shows the message)."""


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def item_id(prompt: str, responses: list[str]) -> str:
    """Stable id of a prompt with its responses: loading the same file twice adds nothing."""
    digest = hashlib.sha256(json.dumps([prompt, responses]).encode()).hexdigest()
    return digest[:16]


def check_ranking(ranking: Any, ties: Any, n: int) -> tuple[list[int], list[list[int]]]:
    """A ranking must order every response exactly once; ties pair two of them."""
    if not isinstance(ranking, list) or sorted(ranking) != list(range(n)):
        raise RatingError(f"ranking must list each of the {n} responses once, best first")
    pairs = []
    for tie in ties or []:
        if (
            not isinstance(tie, list)
            or len(tie) != 2
            or not all(isinstance(i, int) and 0 <= i < n for i in tie)
            or tie[0] == tie[1]
        ):
            raise RatingError(f"a tie is a pair of two different responses 0..{n - 1}: {tie!r}")
        pairs.append(sorted(tie))
    return list(ranking), sorted(pairs)


def display_order(rater: str, item: str, n: int) -> list[int]:
    """The order a rater sees the responses in: shuffled per rater and prompt (no position
    bias), but the same on every reload."""
    order = list(range(n))
    random.Random(f"{rater}/{item}").shuffle(order)
    return order


class RatingStore:
    """The SQLite file behind the rating page; every method opens its own connection."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    # --- raters -------------------------------------------------------------------------

    def add_rater(self, name: str) -> str:
        """Issue a token for ``name`` (a new one replaces the old); returned once, never stored."""
        name = name.strip()
        if not name:
            raise RatingError("a rater needs a name")
        token = secrets.token_urlsafe(24)
        with self._connect() as db:
            db.execute(
                "INSERT INTO raters (name, token_sha256, created) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET token_sha256 = excluded.token_sha256",
                (name, _sha256(token), time.time()),
            )
        return token

    def rater(self, token: str | None) -> str | None:
        """The rater a token belongs to, or None."""
        if not token:
            return None
        with self._connect() as db:
            row = db.execute(
                "SELECT name FROM raters WHERE token_sha256 = ?", (_sha256(token),)
            ).fetchone()
        return row["name"] if row else None

    # --- items --------------------------------------------------------------------------

    def add_items(self, items: Iterable[dict[str, Any]]) -> int:
        """Add prompts with their responses (``prompt``, ``responses``, ``source``); items
        already present are left as they are. Returns how many were new."""
        added = 0
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            position = db.execute("SELECT COALESCE(MAX(position), -1) FROM items").fetchone()[0]
            for item in items:
                responses = [str(r) for r in item["responses"]]
                key = item_id(item["prompt"], responses)
                position += 1
                cursor = db.execute(
                    "INSERT OR IGNORE INTO items (id, position, prompt, responses, source) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, position, item["prompt"], json.dumps(responses), item.get("source", "")),
                )
                added += cursor.rowcount
            db.execute("COMMIT")
        return added

    def next_item(self, rater: str) -> dict[str, Any] | None:
        """The first prompt this rater has not rated yet, responses in their display order."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM items WHERE id NOT IN "
                "(SELECT item_id FROM ratings WHERE rater = ?) ORDER BY position LIMIT 1",
                (rater,),
            ).fetchone()
        if row is None:
            return None
        responses = json.loads(row["responses"])
        order = display_order(rater, row["id"], len(responses))
        return {
            "id": row["id"],
            "prompt": row["prompt"],
            "responses": [{"index": i, "text": responses[i]} for i in order],
        }

    def progress(self, rater: str) -> dict[str, int]:
        with self._connect() as db:
            total = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            done = db.execute("SELECT COUNT(*) FROM ratings WHERE rater = ?", (rater,)).fetchone()[
                0
            ]
        return {"done": done, "remaining": total - done, "total": total}

    # --- ratings ------------------------------------------------------------------------

    def submit(
        self, rater: str, item: str, ranking: Any, ties: Any = (), all_bad: bool = False
    ) -> None:
        """Store one rating (committed to disk before returning); rating twice is refused."""
        with self._connect() as db:
            row = db.execute("SELECT responses FROM items WHERE id = ?", (item,)).fetchone()
            if row is None:
                raise RatingError(f"no prompt with id {item!r}")
            ranking, pairs = check_ranking(ranking, list(ties), len(json.loads(row["responses"])))
            try:
                db.execute(
                    "INSERT INTO ratings (rater, item_id, created, ranking, ties, all_bad) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        rater,
                        item,
                        time.time(),
                        json.dumps(ranking),
                        json.dumps(pairs),
                        int(all_bad),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise RatingError("this prompt is rated already") from None
                raise RatingError(f"unknown rater {rater!r}") from None

    def ratings(self) -> Iterator[dict[str, Any]]:
        """Every rating joined with its prompt and responses, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT r.*, i.prompt, i.responses, i.source FROM ratings r "
                "JOIN items i ON i.id = r.item_id ORDER BY r.id"
            ).fetchall()
        for row in rows:
            yield {
                "rater": row["rater"],
                "item_id": row["item_id"],
                "created": row["created"],
                "prompt": row["prompt"],
                "responses": json.loads(row["responses"]),
                "source": row["source"],
                "ranking": json.loads(row["ranking"]),
                "ties": json.loads(row["ties"]),
                "all_bad": bool(row["all_bad"]),
            }


# --- export ----------------------------------------------------------------------------------


def tie_groups(ranking: list[int], ties: list[list[int]]) -> list[set[int]]:
    """Responses marked tied, joined transitively (a~b and b~c: a, b, c tie)."""
    groups: list[set[int]] = [{i} for i in ranking]
    for a, b in ties:
        ga = next(g for g in groups if a in g)
        gb = next(g for g in groups if b in g)
        if ga is not gb:
            ga |= gb
            groups.remove(gb)
    return groups


def preference_row(rating: dict[str, Any]) -> dict[str, Any]:
    """A rating as natal's preference format: responses best first, ties as positions there."""
    ranking = rating["ranking"]
    position = {response: pos for pos, response in enumerate(ranking)}
    tied = [
        sorted((position[a], position[b]))
        for group in tie_groups(ranking, rating["ties"])
        for a, b in combinations(sorted(group), 2)
    ]
    return {
        "prompt": rating["prompt"],
        "responses": [rating["responses"][i] for i in ranking],
        "ties": sorted(tied),
        "rater": rating["rater"],
        "source": rating["source"] or "rating",
        "prompt_id": rating["item_id"],
        "rated_at": rating["created"],
    }


def relations(ranking: list[int], ties: list[list[int]]) -> dict[tuple[int, int], int]:
    """For each pair of responses (i < j): 1 if i ranks above j, -1 below, 0 tied."""
    level = {}
    for rank, group in enumerate(_ordered_groups(ranking, ties)):
        for response in group:
            level[response] = rank
    return {
        (i, j): (level[j] > level[i]) - (level[j] < level[i])
        for i, j in combinations(sorted(ranking), 2)
    }


def _ordered_groups(ranking: list[int], ties: list[list[int]]) -> list[set[int]]:
    groups = tie_groups(ranking, ties)
    return sorted(groups, key=lambda g: min(ranking.index(i) for i in g))


def pairwise_agreement(a: dict[tuple[int, int], int], b: dict[tuple[int, int], int]) -> float:
    """Share of response pairs two raters ordered the same way (ties must match too)."""
    return sum(a[pair] == b[pair] for pair in a) / len(a)


def kendall_tau_b(a: dict[tuple[int, int], int], b: dict[tuple[int, int], int]) -> float | None:
    """Kendall's tau-b between two rankings with ties (None when one ranks everything equal)."""
    concordant = sum(a[p] * b[p] for p in a)
    ties_a = sum(a[p] != 0 for p in a)
    ties_b = sum(b[p] != 0 for p in b)
    if not ties_a or not ties_b:
        return None
    return concordant / (ties_a * ties_b) ** 0.5


def agreement(ratings: list[dict[str, Any]]) -> dict[str, Any]:
    """Inter-rater agreement over prompts rated by two raters or more (every pair of raters)."""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rating in ratings:
        by_item[rating["item_id"]].append(rating)
    shared = {item: rs for item, rs in by_item.items() if len(rs) > 1}
    agree, taus = [], []
    for rs in shared.values():
        rel = [relations(r["ranking"], r["ties"]) for r in rs]
        for a, b in combinations(rel, 2):
            agree.append(pairwise_agreement(a, b))
            tau = kendall_tau_b(a, b)
            if tau is not None:
                taus.append(tau)
    return {
        "prompts_rated_more_than_once": len(shared),
        "rater_pairs_compared": len(agree),
        "pairwise_agreement": round(sum(agree) / len(agree), 4) if agree else None,
        "kendall_tau_b": round(sum(taus) / len(taus), 4) if taus else None,
    }


def export(store: RatingStore, path: str | Path) -> dict[str, Any]:
    """Write one JSONL row per rating (responses best first) and ``PATH.agreement.json``.

    Ratings marked "all bad" say no response is worth learning from: they are counted and
    left out of the preference data (they still count towards agreement).
    """
    ratings = list(store.ratings())
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("w", encoding="utf-8") as fh:
        for rating in ratings:
            if rating["all_bad"]:
                continue
            fh.write(json.dumps(preference_row(rating), ensure_ascii=False) + "\n")
            written += 1
    summary = agreement(ratings)
    Path(f"{out}.agreement.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {
        "stage": "rate-export",
        "counts": {
            "ratings": len(ratings),
            "rows_written": written,
            "skipped_all_bad": len(ratings) - written,
            "raters": len({r["rater"] for r in ratings}),
        },
        **{k: v for k, v in summary.items() if v is not None},
        "output": str(out),
    }
