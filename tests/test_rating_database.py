"""The SQLite rating store: tokens, items, durable ratings, export and inter-rater agreement."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines.posttrain.preference_data import from_rating_export
from serving.rating.database import (
    RatingError,
    RatingStore,
    agreement,
    check_ranking,
    display_order,
    export,
    kendall_tau_b,
    preference_row,
    relations,
    tie_groups,
)

ITEMS = [
    {"prompt": f"prompt {i}", "responses": [f"r{i}a", f"r{i}b", f"r{i}c"], "source": "test"}
    for i in range(4)
]


@pytest.fixture
def store(tmp_path: Path) -> RatingStore:
    store = RatingStore(tmp_path / "ratings.sqlite")
    assert store.add_items(ITEMS) == 4
    return store


def test_wal_mode_and_tokens_are_stored_hashed(store: RatingStore) -> None:
    token = store.add_rater("ada")
    assert store.rater(token) == "ada" and store.rater("guess") is None and store.rater("") is None
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert token not in json.dumps(db.execute("SELECT * FROM raters").fetchall())
    renewed = store.add_rater("ada")
    assert store.rater(renewed) == "ada" and store.rater(token) is None


def test_loading_the_same_items_twice_adds_nothing(store: RatingStore) -> None:
    assert store.add_items(ITEMS) == 0
    assert store.progress("ada") == {"done": 0, "remaining": 4, "total": 4}


def test_next_item_is_shuffled_per_rater_but_stable(store: RatingStore) -> None:
    item = store.next_item("ada")
    assert item["prompt"] == "prompt 0"
    indices = [r["index"] for r in item["responses"]]
    assert sorted(indices) == [0, 1, 2] and store.next_item("ada") == item
    assert [r["text"] for r in item["responses"]] == [ITEMS[0]["responses"][i] for i in indices]
    orders = {tuple(display_order(f"rater{k}", item["id"], 5)) for k in range(20)}
    assert len(orders) > 1


def test_submit_validates_and_refuses_twice(store: RatingStore) -> None:
    first = store.next_item("ada")["id"]
    for ranking in ([0, 1], [0, 1, 1], [0, 1, 3], "012"):
        with pytest.raises(RatingError):
            store.submit("ada", first, ranking)
    with pytest.raises(RatingError):
        store.submit("ada", first, [0, 1, 2], ties=[[0, 0]])
    with pytest.raises(RatingError):
        store.submit("ada", "nope", [0, 1, 2])
    with pytest.raises(RatingError, match="unknown rater"):
        store.submit("ada", first, [0, 1, 2])
    store.add_rater("ada")
    store.submit("ada", first, [2, 0, 1], ties=[[1, 0]])
    with pytest.raises(RatingError, match="already"):
        store.submit("ada", first, [0, 1, 2])
    (rating,) = store.ratings()
    assert rating["ranking"] == [2, 0, 1] and rating["ties"] == [[0, 1]]
    assert store.next_item("ada")["prompt"] == "prompt 1"
    assert store.progress("ada") == {"done": 1, "remaining": 3, "total": 4}


def test_a_crash_loses_nothing_submitted(store: RatingStore) -> None:
    """A process that submits and dies without closing anything: the rating is there."""
    store.add_rater("ada")
    item = store.next_item("ada")["id"]
    code = (
        "import os, sys; from serving.rating.database import RatingStore; "
        f"RatingStore({str(store.path)!r}).submit('ada', {item!r}, [1, 2, 0]); os._exit(9)"
    )
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 9
    reopened = RatingStore(store.path)
    assert [r["ranking"] for r in reopened.ratings()] == [[1, 2, 0]]


def test_several_raters_at_once(store: RatingStore) -> None:
    raters = [f"rater{i}" for i in range(6)]
    for name in raters:
        store.add_rater(name)
    errors: list[Exception] = []

    def rate_all(name: str) -> None:
        try:
            while (item := store.next_item(name)) is not None:
                store.submit(name, item["id"], [r["index"] for r in item["responses"]])
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=rate_all, args=(name,)) for name in raters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list(store.ratings())) == 6 * 4


def test_ties_join_transitively_and_export_as_positions() -> None:
    assert sorted(map(sorted, tie_groups([3, 0, 1, 2], [[0, 3], [1, 0]]))) == [[0, 1, 3], [2]]
    rating = {
        "prompt": "p",
        "responses": ["a", "b", "c", "d"],
        "ranking": [3, 0, 1, 2],
        "ties": [[0, 3]],
        "rater": "ada",
        "source": "s",
        "item_id": "x",
        "created": 1.0,
    }
    row = preference_row(rating)
    assert row["responses"] == ["d", "a", "b", "c"] and row["ties"] == [[0, 1]]
    # the reward stage's reader: 6 ordered pairs minus the tied one
    assert len(from_rating_export(row)) == 5


def test_agreement_by_hand() -> None:
    a = relations([0, 1, 2], [])
    b = relations([0, 2, 1], [])
    assert a == {(0, 1): 1, (0, 2): 1, (1, 2): 1} and b[(1, 2)] == -1
    assert kendall_tau_b(a, b) == pytest.approx(1 / 3)
    assert kendall_tau_b(a, relations([2, 1, 0], [])) == pytest.approx(-1.0)
    tied = relations([0, 1, 2], [[0, 1], [1, 2]])
    assert kendall_tau_b(a, tied) is None
    ratings = [
        {"item_id": "x", "ranking": [0, 1, 2], "ties": []},
        {"item_id": "x", "ranking": [0, 2, 1], "ties": []},
        {"item_id": "y", "ranking": [0, 1], "ties": []},
    ]
    summary = agreement(ratings)
    assert summary["prompts_rated_more_than_once"] == 1 and summary["rater_pairs_compared"] == 1
    assert summary["pairwise_agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["kendall_tau_b"] == pytest.approx(1 / 3, abs=1e-4)


def test_check_ranking_sorts_tie_pairs() -> None:
    assert check_ranking([1, 0], [[1, 0]], 2) == ([1, 0], [[0, 1]])


def test_export_file_and_agreement(store: RatingStore, tmp_path: Path) -> None:
    for name in ("ada", "bob"):
        store.add_rater(name)
    first = store.next_item("ada")["id"]
    store.submit("ada", first, [0, 1, 2])
    store.submit("bob", first, [0, 2, 1])
    second = store.next_item("ada")["id"]
    store.submit("ada", second, [2, 1, 0], all_bad=True)
    out = tmp_path / "prefs.jsonl"
    stats = export(store, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["rater"] for r in rows] == ["ada", "bob"]
    assert rows[1]["responses"] == ["r0a", "r0c", "r0b"]
    assert stats["counts"]["skipped_all_bad"] == 1 and stats["pairwise_agreement"] == 0.6667
    assert json.loads(Path(f"{out}.agreement.json").read_text())["rater_pairs_compared"] == 1
