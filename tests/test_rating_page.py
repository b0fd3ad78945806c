"""The rating page in a real headless Chromium (Playwright), served by Ray Serve."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port

from cluster.config import load_config
from pipelines.data.stats import StageStats
from pipelines.posttrain.preference_data import from_rating_export
from serving.rating import app as rating_app
from serving.rating.database import RatingStore, export

pytestmark = pytest.mark.ray

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><b>bold</b>'
ROLLOUTS = [
    {"prompt": "Name a colour.", "responses": ["red", "blue", XSS]},
    {"prompt": "Count to three.", "responses": ["1 2 3", "one two three", "3 2 1"]},
    {"prompt": "Say hello.", "responses": ["hello", "bye"]},
]


@pytest.fixture(scope="module")
def page_server(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The page on its own port over a fresh store with three prompts and one rater."""
    from ray import serve

    tmp = tmp_path_factory.mktemp("rate")
    rollouts = tmp / "rollouts.jsonl"
    rollouts.write_text("\n".join(json.dumps(r) for r in ROLLOUTS) + "\n{broken\n")
    cfg = load_config(
        values={"rate.db_path": str(tmp / "ratings.sqlite"), "rate.port": free_port()}
    )
    store = RatingStore(cfg.rate.db_path)
    stats = StageStats("rate")
    assert store.add_items(rating_app.load_rollouts(str(rollouts), stats)) == 3
    assert stats.breakdown["skipped_by_reason"]["corrupt_record"] == 1
    token = store.add_rater("ada")
    url = rating_app.start(cfg)
    yield {"url": url, "token": token, "store": store, "tmp": tmp}
    serve.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_api_refuses_requests_without_a_token(page_server: dict) -> None:
    url, store = page_server["url"], page_server["store"]
    assert httpx.get(f"{url}api/next").status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    rating = {"item_id": store.next_item("ada")["id"], "ranking": [0, 1, 2]}
    assert httpx.post(f"{url}api/ratings", json=rating, headers=bad).status_code == 401
    assert httpx.post(f"{url}api/ratings", json=rating).status_code == 401
    assert list(store.ratings()) == []


def _order(page: object) -> list[str]:
    return page.locator("#responses .card .text").all_text_contents()


def test_rate_in_the_browser_then_export(page_server: dict, browser: object) -> None:
    url, token, tmp = page_server["url"], page_server["token"], page_server["tmp"]
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    page.goto(url)
    page.fill("#token", "wrong-token")
    page.click("#signin-button")
    page.wait_for_selector("#signin-error:has-text('Unknown token')")

    page.fill("#token", token)
    page.click("#signin-button")
    page.wait_for_selector("#rating:not([hidden])")
    assert page.text_content("#progress") == "0 done / 3 remaining"
    assert page.text_content("#prompt") == "Name a colour."
    # the <script> response renders as text: nothing ran, no element was made from it
    assert XSS in _order(page)
    assert page.evaluate("window.pwned") is None
    assert page.locator("#responses b, #responses img, #responses script").count() == 0
    page.screenshot(path=str(tmp / "rating-page.png"), full_page=True)

    # keys: the response labelled 3 first, then 1, then 2
    labels = page.locator("#responses .card .key").all_text_contents()
    shown = _order(page)
    for key in "312":
        page.keyboard.press(key)
    expected = [shown[labels.index(k)] for k in "312"]
    assert _order(page) == expected
    page.keyboard.press("Enter")
    page.wait_for_selector("#prompt:has-text('Count to three.')")
    assert page.text_content("#progress") == "1 done / 2 remaining"

    # mouse: drag the last card onto the first, then tie the top two
    before = _order(page)
    cards = page.locator("#responses .card")
    cards.nth(2).drag_to(cards.nth(0))
    after = _order(page)
    assert after == [before[2], before[0], before[1]]
    page.locator("#responses .card").nth(0).locator(".tie").click()
    assert (
        page.locator("#responses .card").nth(0).locator(".tie").get_attribute("aria-pressed")
        == "true"
    )
    page.click("#submit")
    page.wait_for_selector("#prompt:has-text('Say hello.')")

    page.check("#all-bad")
    page.click("#submit")
    page.wait_for_selector("#done:not([hidden])")
    assert page.text_content("#progress") == "3 done / 0 remaining"
    page.close()

    stats = export(page_server["store"], tmp / "prefs.jsonl")
    rows = [json.loads(line) for line in (tmp / "prefs.jsonl").read_text().splitlines()]
    assert stats["counts"] == {"ratings": 3, "rows_written": 2, "skipped_all_bad": 1, "raters": 1}
    first, second = rows
    assert first["prompt"] == "Name a colour." and first["responses"] == expected
    assert first["rater"] == "ada" and first["ties"] == []
    assert second["responses"] == after and second["ties"] == [[0, 1]]
    # natal reward reads it: tied responses give no pair, the rest do
    assert len(from_rating_export(second)) == 2 and len(from_rating_export(first)) == 3


def test_cli_issues_tokens_exports_and_explains_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from cluster.cli import main

    db = str(tmp_path / "r.sqlite")
    assert main(["rate", "--db", db, "--add-rater", "bob"]) == 0
    token = capsys.readouterr().out.split("token ")[1].split()[0]
    assert RatingStore(db).rater(token) == "bob"
    assert main(["rate", "--db", db, "--export", str(tmp_path / "p.jsonl")]) == 0
    assert (tmp_path / "p.jsonl").exists() and (tmp_path / "p.jsonl.agreement.json").exists()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    assert main(["rate", "--db", db, "--prompts", str(prompts)]) == 2
    assert "needs --model" in capsys.readouterr().err


def test_responses_generated_by_a_model(tmp_path: Path) -> None:
    from tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Name a colour."}\n{"messages": []}\n{"prompt": "Count."}\n')
    cfg = load_config(values={"rate.responses_per_prompt": 3, "rate.max_new_tokens": 8})
    cfg.serve.kv_cache_mb = 32
    stats = StageStats("rate")
    items = rating_app.generate_items(cfg, str(prompts), str(model), stats)
    assert [i["prompt"] for i in items] == ["Name a colour.", "Count."]
    assert all(len(i["responses"]) == 3 for i in items)
    assert stats.breakdown["skipped_by_reason"]["no_prompt"] == 1
    assert items[0]["source"] == "model:tiny"
