"""The whole lifecycle's verbs: run, curate, eval, report (cluster/lifecycle.py, stages.py)."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.commands.base import Command
from cluster.config import NatalConfig


def _run_args(p: argparse.ArgumentParser) -> None:
    from cluster.stages import STAGES

    names = [s.name for s in STAGES]
    p.add_argument("--output", required=True, metavar="RUNDIR", help="one directory per stage")
    p.add_argument("--from", dest="start", choices=names, metavar="STAGE", help="first stage")
    p.add_argument("--until", choices=names, metavar="STAGE", help="last stage")


def _run(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from cluster.console import logs_to
    from cluster.lifecycle import run_lifecycle
    from cluster.stages import STAGES

    logs = f"{args.output}/logs/natal.log"
    print(f"[natal run] Ray's, Ray Data's and vLLM's logs: {logs}", flush=True)
    with logs_to(logs) as terminal:
        summary = run_lifecycle(
            cfg,
            args.output,
            STAGES,
            args.start,
            args.until,
            log=lambda line: print(line, file=terminal),
        )
    report = f"{args.output}/report.html"
    stats = {"stage": "run", "breakdown": {"stages": summary["stages"]}, "report": report}
    return {**stats, "logs": logs}


def _curate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", required=True, metavar="URI", help="as natal ingest")
    p.add_argument("--output", required=True, metavar="DIR", help="DIR/{ingest,filter,dedup}")


def _curate(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from cluster.lifecycle import run_lifecycle
    from cluster.stages import curate_stages

    summary = run_lifecycle(cfg, args.output, curate_stages(args.input))
    documents = f"{args.output}/dedup/documents"
    return {"stage": "curate", "breakdown": {"stages": summary["stages"]}, "documents": documents}


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUNDIR", help="a natal run directory")
    p.add_argument(
        "--prompts",
        metavar="FILE",
        help="prompts the policy never trained on (default: RUNDIR/rlhf/heldout_prompts.jsonl)",
    )


def _eval(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from pipelines.rl import evaluate

    root = Path(args.run)
    return evaluate.run_lifecycle_eval(cfg, root, args.prompts or evaluate.heldout_prompts(root))


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUNDIR", help="a natal run directory")


def _report(cfg: NatalConfig | None, args: argparse.Namespace) -> dict[str, Any]:
    from cluster.report import write_report
    from cluster.stages import STAGES

    path = write_report(args.run_dir, [s.name for s in STAGES])
    print(f"natal report: {path}")
    return {}


COMMANDS: list[Command] = [
    Command(
        "run",
        "the whole lifecycle, crawl to served model, from one config",
        _run_args,
        _run,
        description=(
            "crawl → ingest → filter → dedup → tokenizer → tokenize → pretrain → conversations →\n"
            "sft → reward → judge → rlhf → eval → serve → report, each under RUNDIR/<stage>\n"
            "with a manifest. A rerun skips stages whose config and inputs are unchanged and\n"
            "resumes an interrupted one; --from/--until select a range. Without\n"
            "data.crawl.seeds the crawl is of Python's own documentation server, started on\n"
            "127.0.0.1 (the demo).\n\n"
            "examples:\n  natal run --output runs/demo                 # the embedded demo config\n"
            "  natal run --config my.yaml --output runs/big --until tokenize\n"
            "  natal run --output runs/demo --from sft       # redo post-training only"
        ),
    ),
    Command(
        "curate",
        "ingest → filter → dedup in one go",
        _curate_args,
        _curate,
        description=(
            "The data phase on your own inputs: DIR/ingest, DIR/filter, DIR/dedup (the curated\n"
            "documents are DIR/dedup/documents). Reruns skip unchanged steps.\n\n"
            "example:\n  natal curate --input 's3://bucket/crawl/*.warc.gz' --output runs/curated"
        ),
    ),
    Command(
        "eval",
        "perplexity, reward-model accuracy, RLHF win rate vs SFT on held-out prompts",
        _eval_args,
        _eval,
        description=(
            "Evaluate a natal run directory: held-out perplexity of the pre-trained model,\n"
            "the reward model's held-out accuracy, and reward and win rate (bootstrap 95%\n"
            "interval) of the RLHF policy against the SFT model on the prompts natal rlhf held\n"
            "out, judged by the reward RLHF trained against (not independent) and by the\n"
            "independent judges: RUNDIR/judge (a reward model of preference prompts the\n"
            "training one never saw) and lifecycle.judge_fn (a rule).\n\n"
            "example:\n  natal eval --run runs/demo"
        ),
    ),
    Command(
        "report",
        "one self-contained HTML page of a run",
        _report_args,
        _report,
        description=(
            "Write RUNDIR/report.html: removals by filter, dedup cluster sizes, the source\n"
            "mixture, loss curves, reward-model accuracy, RLHF reward/KL, before/after answers,\n"
            "time per stage.\n\nexample:\n  natal report runs/demo"
        ),
        takes_config=False,
    ),
]
