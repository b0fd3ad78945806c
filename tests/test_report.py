"""The run report: every stage's numbers and plots on one self-contained page."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.cli import main
from cluster.report import write_report
from cluster.stages import STAGES


def make_run(root):
    def stage(name, stats, seconds=3.0):
        (root / name).mkdir(parents=True)
        manifest = {"status": "done", "seconds": seconds, "code_version": "abc", "stats": stats}
        (root / name / "manifest.json").write_text(json.dumps(manifest))
        (root / name / "stats.json").write_text(json.dumps(stats))

    stage(
        "filter",
        {
            "counts": {"kept": 6, "removed": 4},
            "breakdown": {"removed_by_reason": {"gopher": 3, "c4": 1}},
        },
    )
    stage("dedup", {"counts": {"kept": 5}})
    pq.write_table(
        pa.table({"id": ["a", "b", "c"], "cluster": ["a", "a", "a"]}),
        root / "dedup" / "clusters.parquet",
    )
    stage("pretrain", {"counts": {}}, seconds=60)
    rows = [{"step": s, "loss": 5.0 - s / 10, "val_loss": 5.1 - s / 10} for s in range(1, 6)]
    (root / "pretrain" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    judges = [{"name": "judge_rule", "independent": True, "win_rate_ci95": "0.20–0.45"}]
    stage("eval", {"counts": {"prompts": 1}, "judges": judges})
    verdict = {"reward_policy": -0.5, "reward_baseline": -0.25, "win_rate": 0.25}
    result = {
        "pretrain": {"val_ppl": 42.0},
        "reward_model_accuracy": 0.8,
        "rlhf_vs_sft": {
            "prompts": 1,
            "judges": {
                "training_reward": {
                    **verdict,
                    "label": "the reward RLHF trained against (not independent)",
                    "independent": False,
                    "win_rate_ci95": [0.1, 0.45],
                },
                "judge_rule": {
                    **verdict,
                    "label": "judge rule demo:rule",
                    "independent": True,
                    "win_rate": 0.375,
                    "win_rate_ci95": [0.2, 0.45],
                },
            },
            "examples": [
                {
                    "prompt": "p",
                    "baseline": "<script>alert(1)</script>",
                    "policy": "ok",
                    "scores": {"judge_rule": {"baseline": 0.125, "policy": 0.75}},
                }
            ],
        },
    }
    (root / "eval" / "eval.json").write_text(json.dumps(result))


def test_report_has_every_stage_plots_and_escapes_text(tmp_path):
    make_run(tmp_path)
    page = write_report(tmp_path, [s.name for s in STAGES]).read_text()
    for name in ("crawl", "filter", "dedup", "pretrain", "eval", "report"):
        assert f"id='{name}'" in page
    assert "not run" in page  # crawl did not run here
    # time per stage + removals + cluster sizes + the loss curve: at least four plots inline
    assert page.count("data:image/png;base64,") >= 4
    assert "0.25" in page and "42" in page
    assert "RLHF lost to SFT" in page  # said plainly, not left for the reader to spot
    # one row per judge, saying which one the policy trained against, with its interval
    assert "judge rule demo:rule</td><td>yes</td>" in page and "0.375</td><td>0.2–0.45" in page
    assert "(not independent)</td><td>no: the policy trained against it" in page
    assert "<td>0.125 → 0.75</td>" in page  # each judge's scores beside the answers
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_command_writes_the_page(tmp_path, capsys):
    make_run(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").exists()
    assert "report.html" in capsys.readouterr().out
