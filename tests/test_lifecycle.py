"""The lifecycle runner: order, skip when unchanged, rerun on change, resume, ranges."""

import json

import pytest

from cluster.config import load_config
from cluster.config.errors import ConfigError
from cluster.lifecycle import Stage, fingerprint, run_lifecycle, select_stages


def make_stages(calls: list[str], fail_at: str | None = None) -> list[Stage]:
    def runner(name: str):
        def run(cfg, root):
            calls.append(name)
            if name == fail_at:
                raise RuntimeError(f"{name} interrupted")
            (root / name / "out.txt").write_text(f"{name} {cfg.data.min_words}")
            return {"counts": {"ran": 1}}

        return run

    return [
        Stage("first", ("data.crawl",), (), runner("first")),
        Stage("second", ("data.min_words",), ("first",), runner("second")),
        Stage("third", ("data.ingest",), ("second",), runner("third")),
    ]


def test_runs_in_order_then_skips_unchanged(tmp_path):
    cfg = load_config()
    calls: list[str] = []
    summary = run_lifecycle(cfg, tmp_path, make_stages(calls), log=lambda _: None)
    assert calls == ["first", "second", "third"]
    assert all(v.startswith("done") for v in summary["stages"].values())
    manifest = json.loads((tmp_path / "second" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["inputs"] == {"first": str(tmp_path / "first")}
    assert (tmp_path / "config.yaml").exists()

    calls.clear()
    run_lifecycle(cfg, tmp_path, make_stages(calls), log=lambda _: None)
    assert calls == []


def test_config_change_reruns_that_stage_and_downstream_only(tmp_path):
    calls: list[str] = []
    run_lifecycle(load_config(), tmp_path, make_stages(calls), log=lambda _: None)
    calls.clear()
    changed = load_config(None, ["data.min_words=7"])
    run_lifecycle(changed, tmp_path, make_stages(calls), log=lambda _: None)
    assert calls == ["second", "third"]
    assert (tmp_path / "second" / "out.txt").read_text() == "second 7"


def test_interrupted_stage_runs_again_and_done_ones_are_skipped(tmp_path):
    cfg = load_config()
    calls: list[str] = []
    with pytest.raises(RuntimeError):
        run_lifecycle(cfg, tmp_path, make_stages(calls, fail_at="second"), log=lambda _: None)
    status = json.loads((tmp_path / "second" / "manifest.json").read_text())["status"]
    assert status == "running"
    calls.clear()
    run_lifecycle(cfg, tmp_path, make_stages(calls), log=lambda _: None)
    assert calls == ["second", "third"]


def test_from_until_select_a_range(tmp_path):
    cfg = load_config()
    calls: list[str] = []
    run_lifecycle(cfg, tmp_path, make_stages(calls), until="second", log=lambda _: None)
    assert calls == ["first", "second"]
    calls.clear()
    run_lifecycle(cfg, tmp_path, make_stages(calls), start="third", log=lambda _: None)
    assert calls == ["third"]


def test_from_without_upstream_output_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="needs second"):
        run_lifecycle(load_config(), tmp_path, make_stages([]), start="third", log=lambda _: None)


def test_select_rejects_unknown_and_reversed_ranges():
    stages = make_stages([])
    with pytest.raises(ConfigError, match="unknown stage"):
        select_stages(stages, "nope", None)
    with pytest.raises(ConfigError, match="comes after"):
        select_stages(stages, "third", "first")


def test_fingerprint_depends_on_sections_and_upstream():
    stages = make_stages([])
    cfg = load_config()
    base = fingerprint(cfg, stages[1], {"first": "a"})
    assert fingerprint(cfg, stages[1], {"first": "b"}) != base
    assert fingerprint(load_config(None, ["data.min_words=3"]), stages[1], {"first": "a"}) != base
    assert (
        fingerprint(load_config(None, ["data.crawl.max_pages=3"]), stages[1], {"first": "a"})
        == base
    )
