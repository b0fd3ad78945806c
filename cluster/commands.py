"""The stages ``natal`` knows: their flags, the config fields the flags set, what they run.

Pipeline modules are imported inside each ``run`` so that ``natal --help`` stays instant.
Each run function returns the stage's stats dict, which the CLI prints as a table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.config import NatalConfig


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[NatalConfig | None, argparse.Namespace], dict[str, Any]]
    description: str = ""
    flags_to_config: dict[str, str] = field(default_factory=dict)
    takes_config: bool = True


# --- crawl ----------------------------------------------------------------------------------


def _crawl_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", action="append", required=True, metavar="URL", help="start URL")
    p.add_argument("--output", required=True, metavar="DIR", help="where WARC.gz files go")
    p.add_argument("--max-pages", type=int, help="stop after this many pages")
    p.add_argument("--max-depth", type=int, help="links followed from a seed, at most")
    p.add_argument("--rate", type=float, metavar="PER_SECOND", help="requests/s per host")


def _crawl(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import crawl

    return crawl.run(cfg, seeds=args.seed, output=args.output)


# --- ingest ---------------------------------------------------------------------------------


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="URI",
        help="WARC/WET(.gz), JSONL(.gz/.zst), Parquet, text/code trees: paths, globs, s3://, http(s)://",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="DIR/documents, DIR/stats.json")
    p.add_argument("--source", help="source tag for the mixture (default: data.ingest.source)")
    p.add_argument("--extractor", choices=["resiliparse", "trafilatura"], help="HTML extractor")


def _ingest(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import ingest

    return ingest.run(cfg, inputs=args.input, output=args.output)


# --- filter ---------------------------------------------------------------------------------


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, metavar="DIR_OR_URI", help="documents to filter")
    p.add_argument("--output", required=True, metavar="DIR", help="DIR/documents, DIR/removed")


def _filter(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import filter as filter_stage

    return filter_stage.run(cfg, input=args.input, output=args.output)


# --- plan, submit, jobs (operations: cluster/plan.py, cluster/jobs.py) ---------------------


def _count(text: str) -> float:
    """``7e9``, ``7B``, ``1.4T``, ``300M`` → a number (parameters, tokens)."""
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}.get(text[-1:].upper())
    try:
        return float(text[:-1]) * scale if scale else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number like 7e9 or 7B") from None


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=_count, required=True, metavar="N", help="parameters: 7e9, 7B")
    p.add_argument("--tokens", type=_count, required=True, metavar="T", help="tokens: 1.4T")
    p.add_argument("--accelerator", choices=["h100", "h200", "a100", "cpu"], help="kind")
    p.add_argument("--count", type=int, metavar="K", help="how many (for cpu: cores)")
    p.add_argument("--mfu", type=float, metavar="M", help="model FLOPs utilization, 0–1")
    p.add_argument("--price-per-hour", type=float, metavar="P", help="per accelerator-hour")
    p.add_argument("--watts", type=float, metavar="W", help="power per accelerator")


def _plan(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from cluster import plan

    p = cfg.plan
    return plan.make_plan(
        args.params, args.tokens, p.accelerator, p.count, p.mfu, p.price_per_hour, p.watts
    ).to_stats()


def _submit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", metavar="URL", help="Ray dashboard, e.g. http://HEAD:8265")
    p.add_argument(
        "--pip-extra",
        action="append",
        dest="pip_extras",
        metavar="EXTRA",
        help="pip-install a natal extra for the job, e.g. cpu (repeatable)",
    )
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="job env var (repeatable)")
    p.add_argument("--no-follow", action="store_true", help="return once the job is submitted")
    p.add_argument("--config", metavar="FILE", help="the stage's YAML config (inside the project)")
    p.add_argument(
        "--set",
        action="append",
        dest="overrides",
        metavar="KEY=VALUE",
        default=[],
        help="override one config field (repeatable); travels with the job",
    )


def _submit_args(p: argparse.ArgumentParser) -> None:
    _submit_options(p)
    p.add_argument("stage", metavar="STAGE", help="the stage to run, e.g. plan, ingest")
    p.add_argument(
        "stage_args", nargs=argparse.REMAINDER, metavar="...", help="the stage's own flags"
    )


def _submit(cfg: NatalConfig | None, args: argparse.Namespace) -> dict[str, Any]:
    from cluster import jobs

    # Submit's options may also follow STAGE (not after `STAGE --`): take them out.
    late = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _submit_options(late)
    if args.stage_args[:1] == ["--"]:
        found, stage_args = late.parse_args([]), args.stage_args[1:]
    else:
        found, stage_args = late.parse_known_args(args.stage_args)
    env = dict(item.split("=", 1) for item in (args.env or []) + (found.env or []) if "=" in item)
    values = {
        "jobs.address": found.address or args.address,
        "jobs.pip_extras": (args.pip_extras or []) + (found.pip_extras or []) or None,
        "jobs.env_vars": env or None,
    }
    return jobs.submit(
        args.stage,
        stage_args,
        config=found.config or args.config,
        overrides=args.overrides + found.overrides,
        values=values,
        follow=not (args.no_follow or found.no_follow),
    )


def _jobs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", metavar="URL", help="Ray dashboard, e.g. http://HEAD:8265")
    p.add_argument("--stop", metavar="JOB_ID", help="stop this job, then list")


def _jobs(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from cluster import jobs

    return jobs.jobs_stats(cfg.jobs.address, stop=args.stop)


# --- dedup, decontaminate (pipelines/dedup) --------------------------------------------------


def _dedup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input", nargs="+", required=True, metavar="URI", help="JSONL(.gz) or Parquet documents"
    )
    p.add_argument("--output", required=True, metavar="DIR", help="documents/, removed/, ...")
    p.add_argument("--threshold", type=float, metavar="J", help="Jaccard of near-duplicates")
    p.add_argument("--ngram", type=int, metavar="N", help="words per shingle (default 5)")
    p.add_argument("--num-perm", type=int, metavar="K", help="MinHash permutations (112)")
    p.add_argument(
        "--against", nargs="+", metavar="DIR", help="earlier dedup runs whose kept docs win"
    )


def _dedup(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.dedup import stage

    return stage.run(cfg, inputs=args.input, output=args.output, against=args.against)


def _decontaminate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", required=True, metavar="URI", help="training documents")
    p.add_argument("--output", required=True, metavar="DIR", help="documents/, removed/")
    p.add_argument(
        "--eval", nargs="+", required=True, metavar="FILE", help="evaluation sets (JSONL/.gz)"
    )
    p.add_argument("--ngram", type=int, metavar="N", help="words per n-gram (default 13)")
    p.add_argument("--mode", choices=["remove", "flag"], help="remove, or keep with a flag")


def _decontaminate(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import decontaminate

    return decontaminate.run_decontaminate(cfg, args.input, args.output, args.eval)


# --- post-training: sft, reward, dpo ---------------------------------------------------------

CHAT_FORMATS = [
    "messages",
    "sharegpt",
    "alpaca",
    "dolly",
    "self_instruct",
    "oasst",
    "prompt_response",
]
PAIR_FORMATS = ["hh_rlhf", "llamafactory", "prompt_pairs", "chat_pairs", "rating_export", "oasst"]


def _post_training_args(formats: list[str], data_help: str, output_help: str):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model", required=True, metavar="DIR", help="HF model dir (with tokenizer)"
        )
        p.add_argument("--data", nargs="+", required=True, metavar="FILE", help=data_help)
        p.add_argument("--output", required=True, metavar="RUNDIR", help=output_help)
        p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps")
        p.add_argument(
            "--format", choices=formats, help="force the data format (default: detected per file)"
        )

    return add


def _sft(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import sft

    return sft.run(cfg, model=args.model, data=args.data, output=args.output, fmt=args.format)


def _reward(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import reward

    return reward.run(cfg, model=args.model, data=args.data, output=args.output, fmt=args.format)


def _dpo(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import dpo

    return dpo.run(cfg, model=args.model, data=args.data, output=args.output, fmt=args.format)


# --- serve and rate (issue 7) ------------------------------------------------------------


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="Hugging Face model directory")
    p.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default: serve.port, 8000)")
    p.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY'")
    p.add_argument(
        "--check",
        nargs="?",
        const="Hello!",
        metavar="PROMPT",
        help="send one chat request with the openai client, print the reply, stop",
    )


def _serve(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from serving import openai_app

    return openai_app.run(cfg, args.model, check=args.check)


def _rate_args(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--add-rater", metavar="NAME", help="issue a sign-in token for a rater")
    mode.add_argument("--export", metavar="FILE", help="write the preference JSONL and stop")
    mode.add_argument("--rollouts", metavar="FILE", help='JSONL of {"prompt", "responses"}')
    mode.add_argument("--prompts", metavar="FILE", help='JSONL of {"prompt"}; needs --model')
    p.add_argument("--model", metavar="DIR", help="model that writes the responses to --prompts")
    p.add_argument("--db", metavar="FILE", help="SQLite store (default: rate.db_path)")
    p.add_argument("--host", help="address of the page (default: rate.host)")
    p.add_argument("--port", type=int, help="HTTP port of the page (default: rate.port)")
    p.add_argument("--responses", type=int, metavar="N", help="responses generated per prompt")


def _rate(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from serving.rating import app

    return app.run(cfg, args.add_rater, args.export, args.prompts, args.rollouts, args.model)


# --- rlhf -----------------------------------------------------------------------------------


def _rlhf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, metavar="DIR", help="HF model to improve (e.g. SFT)")
    p.add_argument("--prompts", required=True, metavar="FILE", help="JSONL: prompt or messages")
    p.add_argument("--output", required=True, metavar="RUNDIR", help="run directory")
    p.add_argument("--reward-model", metavar="DIR", help="sequence-classification model")
    p.add_argument(
        "--reward-fn", action="append", metavar="MODULE:FUNCTION", help="rule f(prompt, response)"
    )
    p.add_argument("--algo", choices=["grpo", "ppo", "rloo"], help="advantage estimator")
    p.add_argument("--steps", type=int, help="RL steps")
    p.add_argument("--group-size", type=int, metavar="G", help="answers per prompt")
    p.add_argument("--max-new-tokens", type=int, metavar="T", help="answer length cap")
    p.add_argument("--rollout-actors", type=int, metavar="K", help="vLLM engines")


def _rlhf(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import rlhf

    return rlhf.run(cfg, policy=args.policy, prompts=args.prompts, output=args.output)


# --- tokenizer, tokenize, pretrain ----------------------------------------------------------


def _tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="DIR_OR_URI",
        help="documents: a stage run dir, a documents dir, or JSONL/Parquet files with text",
    )
    p.add_argument("--output", required=True, metavar="TOKDIR", help="Hugging Face tokenizer dir")
    p.add_argument("--vocab-size", type=int, metavar="N", help="BPE vocabulary incl. specials")


def _tokenizer(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import tokenizer

    return tokenizer.run(cfg, inputs=args.input, output=args.output)


def _tokenize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input", nargs="+", required=True, metavar="DIR_OR_URI", help="documents to tokenize"
    )
    p.add_argument("--tokenizer", required=True, metavar="TOKDIR", help="from natal tokenizer")
    p.add_argument("--output", required=True, metavar="SHARDDIR", help="train/, val/, index.json")
    p.add_argument("--seq-len", type=int, metavar="N", help="tokens per packed sequence")


def _tokenize(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import tokenize

    return tokenize.run(cfg, inputs=args.input, tokenizer_dir=args.tokenizer, output=args.output)


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="SHARDDIR", help="from natal tokenize")
    p.add_argument("--tokenizer", required=True, metavar="TOKDIR", help="the shards' tokenizer")
    p.add_argument("--output", required=True, metavar="RUNDIR", help="final/, checkpoints/, ...")
    p.add_argument("--preset", choices=["tiny", "small", "1b", "7b"], help="model size")
    p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps of the run")
    p.add_argument("--workers", type=int, metavar="N", help="Ray Train workers")


def _pretrain(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import pretrain

    return pretrain.run(cfg, data=args.data, tokenizer=args.tokenizer, output=args.output)


# --- lifecycle: run, curate, eval, report ------------------------------------------------------


def _run_args(p: argparse.ArgumentParser) -> None:
    from cluster.stages import STAGES

    names = [s.name for s in STAGES]
    p.add_argument("--output", required=True, metavar="RUNDIR", help="one directory per stage")
    p.add_argument("--from", dest="start", choices=names, metavar="STAGE", help="first stage")
    p.add_argument("--until", choices=names, metavar="STAGE", help="last stage")


def _run(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from cluster.lifecycle import run_lifecycle
    from cluster.stages import STAGES

    summary = run_lifecycle(cfg, args.output, STAGES, args.start, args.until)
    report = f"{args.output}/report.html"
    return {"stage": "run", "breakdown": {"stages": summary["stages"]}, "report": report}


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
    p.add_argument("--prompts", metavar="FILE", help="held-out prompts (default: the run's)")


def _eval(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from cluster.stages import _prompts
    from pipelines import evaluate

    root = Path(args.run)
    return evaluate.run_lifecycle_eval(cfg, root, args.prompts or _prompts(cfg, root))


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUNDIR", help="a natal run directory")


def _report(cfg: NatalConfig | None, args: argparse.Namespace) -> dict[str, Any]:
    from cluster.report import write_report

    path = write_report(args.run_dir)
    print(f"natal report: {path}")
    return {}


COMMANDS: list[Command] = [
    Command(
        "crawl",
        "fetch pages politely from seed URLs into WARC.gz",
        _crawl_args,
        _crawl,
        description=(
            "Fetch pages from --seed URLs, honouring robots.txt, a per-host rate limit and\n"
            "concurrency cap, with retries; write request+response records as WARC.gz:\n"
            "DIR/crawl-00000.warc.gz, ... (data.crawl.pages_per_warc pages each) and\n"
            "DIR/stats.json. A rerun replaces them. More knobs: --set data.crawl.KEY=VALUE\n"
            "(concurrency_per_host, retries, same_host, user_agent, ...).\n\n"
            "examples:\n  natal crawl --seed http://127.0.0.1:8000/ --output runs/crawl --max-pages 50\n"
            "  python -m pipelines.demo_site    # Python's docs on 127.0.0.1: a site to crawl offline"
        ),
        flags_to_config={
            "max_pages": "data.crawl.max_pages",
            "max_depth": "data.crawl.max_depth",
            "rate": "data.crawl.rate",
        },
    ),
    Command(
        "ingest",
        "crawl archives and corpora → documents (Parquet)",
        _ingest_args,
        _ingest,
        description=(
            "Read WARC/WET/JSONL/Parquet (and text or code trees) with Ray Data, one file per\n"
            "task, extract main text from HTML, write DIR/documents/*.parquet and stats.json.\n"
            "Corrupt records are counted in stats.json and skipped. Each document is tagged\n"
            "with a source (web, text, code; or --source) for the later mixture.\n\n"
            "examples:\n  natal ingest --input 's3://bucket/crawl/*.warc.gz' --output runs/ingest\n"
            "  natal ingest --input papers.tar.gz books/ --source books --output runs/books\n"
            "  natal ingest --input ~/src/project --output runs/code   # one document per file"
        ),
        flags_to_config={"source": "data.ingest.source", "extractor": "data.ingest.extractor"},
    ),
    Command(
        "filter",
        "quality filters: URL, language, Gopher, C4, FineWeb, PII",
        _filter_args,
        _filter,
        description=(
            "Apply the quality rules of data.filter to documents (Parquet, e.g. natal ingest's\n"
            "DIR/documents), in order: URL blocklist, language (py3langid), Gopher repetition\n"
            "and quality, C4, FineWeb; then redact PII (emails, IPs, phones) in kept ones.\n"
            "Kept documents go to DIR/documents, removed ones to DIR/removed with the rule's\n"
            "name in `reason` and its measured `value`; DIR/stats.json counts them by reason,\n"
            "source and language, DIR/removals.png charts them. A rerun replaces DIR.\n"
            "Thresholds default to the published ones (see data.filter in cluster/config.py).\n\n"
            "examples:\n"
            "  natal filter --input runs/ingest --output runs/filter --set data.min_words=30\n"
            "  natal filter --input s3://bucket/ingest/documents --output s3://bucket/filter \\\n"
            "      --set 'data.filter.lang.languages=[en,de]' --set data.filter.c4.enabled=false"
        ),
    ),
    Command(
        "plan",
        "estimate a training run: FLOPs, time, cost, energy, compute-optimal tokens",
        _plan_args,
        _plan,
        description=(
            "Training FLOPs ≈ 6·N·T (Kaplan et al. 2020); wall time = FLOPs / (K · peak · MFU);\n"
            "energy = K · watts · time, also in US homes' yearly use (EIA, ~10,500 kWh);\n"
            "compute-optimal tokens ≈ 20·N (Chinchilla). Sources of the constants: cluster/plan.py.\n\n"
            "example:\n  natal plan --params 7B --tokens 1.4T --accelerator h100 --count 256 \\\n"
            "             --mfu 0.4 --price-per-hour 2.5"
        ),
        flags_to_config={
            "accelerator": "plan.accelerator",
            "count": "plan.count",
            "mfu": "plan.mfu",
            "price_per_hour": "plan.price_per_hour",
            "watts": "plan.watts",
        },
    ),
    Command(
        "submit",
        "run a stage as a Ray job on a cluster, follow its logs, exit with its status",
        _submit_args,
        _submit,
        description=(
            "Ship the project directory (without .venv, runs/, .git, files over\n"
            "jobs.max_file_mb) to a Ray cluster and run `natal STAGE ...` there as a Ray job.\n"
            "The config is validated here first; --config (a file inside the project) and --set\n"
            "travel with the job. Exit status: 0 when the job succeeded.\n"
            "Same as: ray job submit --address URL --working-dir . -- natal STAGE ...\n\n"
            "examples:\n"
            "  natal submit --address http://127.0.0.1:8265 plan --params 1B --tokens 20B\n"
            "  natal submit ingest --address http://HEAD:8265 --config configs/demo.yaml \\\n"
            "      --input 's3://bucket/crawl/*.warc.gz' --output s3://bucket/runs/ingest"
        ),
        takes_config=False,
    ),
    Command(
        "jobs",
        "list the Ray jobs of a cluster, or stop one",
        _jobs_args,
        _jobs,
        description=(
            "List the cluster's Ray jobs (id, status, stage, start, entrypoint), newest first;\n"
            "--stop JOB_ID stops one first and waits until it has stopped.\n\n"
            "examples:\n  natal jobs --address http://127.0.0.1:8265\n"
            "  natal jobs --address http://127.0.0.1:8265 --stop raysubmit_XXXX"
        ),
        flags_to_config={"address": "jobs.address"},
    ),
    Command(
        "dedup",
        "exact + MinHash-LSH fuzzy deduplication",
        _dedup_args,
        _dedup,
        description=(
            "Remove exact (normalized text) and near duplicates (MinHash over word n-grams, LSH\n"
            "bands, verified pairs, distributed connected components); keep one document per\n"
            "cluster (data.dedup.keep, default the longest). Writes DIR/documents, DIR/removed\n"
            "(reason duplicate_of=<kept id>), DIR/clusters.parquet, DIR/index (signatures for\n"
            "--against) and DIR/stats.json. --threshold alone derives bands x rows.\n\n"
            "examples:\n  natal dedup --input runs/filter/documents --output runs/dedup\n"
            "  natal dedup --input crawl2/documents --output runs/dedup2 --against runs/dedup"
        ),
        flags_to_config={
            "threshold": "data.dedup.threshold",
            "ngram": "data.dedup.ngram",
            "num_perm": "data.dedup.num_perm",
        },
    ),
    Command(
        "decontaminate",
        "drop training documents that share long n-grams with evaluation sets",
        _decontaminate_args,
        _decontaminate,
        description=(
            "Remove (or flag) documents sharing a word n-gram (default 13 words) with any text\n"
            "of the --eval files (every string field of each JSONL record). Writes\n"
            "DIR/documents, DIR/removed (reason contaminated=<eval file>), DIR/stats.json.\n\n"
            "example:\n  natal decontaminate --input runs/dedup/documents --output runs/decon \\\n"
            "      --eval gsm8k-test.jsonl HumanEval.jsonl.gz"
        ),
        flags_to_config={"ngram": "data.decontaminate.ngram", "mode": "data.decontaminate.mode"},
    ),
    Command(
        "sft",
        "supervised fine-tuning on conversations (loss on assistant turns only)",
        _post_training_args(
            CHAT_FORMATS,
            "conversations: chat messages, ShareGPT, Alpaca, Dolly, Self-Instruct, OpenAssistant "
            "trees (best-ranked path), prompt/response; JSON or JSONL(.gz), local or s3://",
            "RUNDIR/final (model + tokenizer), checkpoints/, metrics.jsonl, loss.png, stats.json",
        ),
        _sft,
        description=(
            "Render each conversation with the model's chat template, train on the assistant\n"
            "tokens only (every other label -100), pack several conversations per row with\n"
            "attention isolated (sft.packing), hold out sft.val_fraction for validation loss.\n"
            "Conversations with no assistant turn or roles out of order are counted and skipped;\n"
            "longer than sft.max_seq_len: the start is kept and the cut counted. A rerun with\n"
            "the same --output resumes from the latest checkpoint.\n\n"
            "example:\n  natal sft --model runs/pretrain/final --data chats.jsonl dolly.jsonl \\\n"
            "      --output runs/sft --max-steps 300"
        ),
        flags_to_config={"max_steps": "sft.max_steps"},
    ),
    Command(
        "reward",
        "reward model (Bradley-Terry) on preference pairs or rankings",
        _post_training_args(
            PAIR_FORMATS,
            "preferences: hh-rlhf chosen/rejected, LLaMA-Factory DPO, prompt/chosen/rejected, "
            "OpenAssistant sibling ranks, natal rating-page export (JSONL)",
            "RUNDIR/final (sequence classifier), eval.json (held-out accuracy), metrics.jsonl",
        ),
        _reward,
        description=(
            "Train LlamaForSequenceClassification (one output) initialized from --model with\n"
            "-log sigmoid(r_chosen - r_rejected - reward.margin). Ranked lists become every\n"
            "ordered pair (ties skipped). Identical or empty pairs are counted and skipped.\n"
            "Reports held-out pairwise accuracy in RUNDIR/eval.json.\n\n"
            "example:\n  natal reward --model runs/sft/final --data ratings.jsonl hh-rlhf.jsonl.gz \\\n"
            "      --output runs/reward --max-steps 200"
        ),
        flags_to_config={"max_steps": "reward.max_steps"},
    ),
    Command(
        "dpo",
        "direct preference optimization against a frozen reference",
        _post_training_args(
            PAIR_FORMATS,
            "preferences, same formats as natal reward",
            "RUNDIR/final (model + tokenizer), metrics.jsonl (margin, accuracy), stats.json",
        ),
        _dpo,
        description=(
            "The offline alternative to natal rlhf: the policy starts from --model, a frozen\n"
            "copy is the reference, loss -log sigmoid(beta * (chosen - rejected log-ratio)).\n"
            "Logs the implicit-reward margin and accuracy on training and held-out pairs.\n\n"
            "example:\n  natal dpo --model runs/sft/final --data pairs.jsonl --output runs/dpo \\\n"
            "      --set dpo.beta=0.1"
        ),
        flags_to_config={"max_steps": "dpo.max_steps"},
    ),
    Command(
        "serve",
        "OpenAI-compatible API on a model (Ray Serve + vLLM)",
        _serve_args,
        _serve,
        description=(
            "Serve a model directory with Ray Serve: replicas run the vLLM engine and answer\n"
            "GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream: true as\n"
            "server-sent events) and GET /health, as the official openai client expects.\n"
            "Replicas autoscale between serve.min_replicas and serve.max_replicas. Blocks until\n"
            "Ctrl-C; --check sends one chat request instead and stops.\n\n"
            "examples:\n  natal serve --model runs/rlhf/final --port 8000 --api-key sk-local\n"
            "  python -c \"import openai; c = openai.OpenAI(base_url='http://127.0.0.1:8000/v1',"
            " api_key='sk-local'); print(c.models.list())\""
        ),
        flags_to_config={"host": "serve.host", "port": "serve.port", "api_key": "serve.api_key"},
    ),
    Command(
        "rate",
        "human rating page: rank responses, export preferences",
        _rate_args,
        _rate,
        description=(
            "A web page (Ray Serve) where signed-in raters rank N responses per prompt (drag, or\n"
            "keys 1..N), mark ties or 'all bad'. Ratings are kept in SQLite (rate.db_path).\n"
            "--rollouts loads responses from a file; --prompts + --model generates them.\n\n"
            "examples:\n  natal rate --add-rater ada            # prints ada's token\n"
            "  natal rate --rollouts rollouts.jsonl --port 8100\n"
            "  natal rate --prompts prompts.jsonl --model runs/sft/final --responses 4\n"
            "  natal rate --export runs/rate/preferences.jsonl   # what natal reward reads"
        ),
        flags_to_config={
            "db": "rate.db_path",
            "host": "rate.host",
            "port": "rate.port",
            "responses": "rate.responses_per_prompt",
        },
    ),
    Command(
        "rlhf",
        "RL from feedback: vLLM rollouts, reward, learners (GRPO, PPO, RLOO)",
        _rlhf_args,
        _rlhf,
        description=(
            "The policy writes --group-size answers per prompt on vLLM rollout actors, a reward\n"
            "actor scores them (a reward model from natal reward and/or rules module:function),\n"
            "learner actors update the policy data-parallel, and the new weights go back to the\n"
            "engines through the object store. Resumes from RUNDIR/checkpoints; writes\n"
            "RUNDIR/final, metrics.jsonl (reward_mean, kl, time split per step) and rlhf.png.\n\n"
            "examples:\n  natal rlhf --policy runs/sft/final --prompts prompts.jsonl --output runs/rlhf \\\n"
            "      --reward-fn pipelines.rewards:arithmetic_exact_match --algo grpo --steps 50\n"
            "  natal rlhf --policy runs/sft/final --prompts prompts.jsonl --output runs/ppo \\\n"
            "      --reward-model runs/reward/final --algo ppo --set rlhf.mode=async"
        ),
        flags_to_config={
            "reward_model": "rlhf.reward_model",
            "reward_fn": "rlhf.reward_fns",
            "algo": "rlhf.algo",
            "steps": "rlhf.steps",
            "group_size": "rlhf.group_size",
            "max_new_tokens": "rlhf.max_new_tokens",
            "rollout_actors": "rlhf.rollout_actors",
        },
    ),
    Command(
        "tokenizer",
        "train a byte-level BPE tokenizer (with chat template) on documents",
        _tokenizer_args,
        _tokenizer,
        description=(
            "Train a byte-level BPE on a sample of the documents (tokenizer.sample_docs) with\n"
            "special tokens <|pad|> <|bos|> <|eos|> and chat role markers <|system|> <|user|>\n"
            "<|assistant|> <|end|>, and a chat template; save a Hugging Face tokenizer dir.\n\n"
            "example:\n  natal tokenizer --input runs/dedup --output runs/tokenizer --vocab-size 8192"
        ),
        flags_to_config={"vocab_size": "tokenizer.vocab_size"},
    ),
    Command(
        "tokenize",
        "documents → packed token shards (train/val, source mixture)",
        _tokenize_args,
        _tokenize,
        description=(
            "Tokenize documents with Ray Data into packed fixed-length uint16/uint32 shards\n"
            "(SHARDDIR/train/*.bin, val/*.bin, index.json), documents separated by eos,\n"
            "sources up/down-sampled to tokenize.mixture; deterministic for tokenize.seed.\n\n"
            "example:\n  natal tokenize --input runs/dedup --tokenizer runs/tokenizer \\\n"
            "      --output runs/shards --seq-len 256 --set 'tokenize.mixture={web: 0.8, code: 0.2}'"
        ),
        flags_to_config={"seq_len": "tokenize.seq_len"},
    ),
    Command(
        "pretrain",
        "pre-train a Llama model on token shards with Ray Train (DDP/FSDP2)",
        _pretrain_args,
        _pretrain,
        description=(
            "Train transformers' LlamaForCausalLM from a preset (tiny, small, 1b, 7b) with Ray\n"
            "Train: DDP or FSDP2 (pretrain.strategy), AdamW + warmup/cosine, checkpoints every\n"
            "pretrain.checkpoint_every steps (a rerun resumes), metrics in RUNDIR/metrics.jsonl,\n"
            "loss curve RUNDIR/loss.png, the Hugging Face model in RUNDIR/final.\n\n"
            "example:\n  natal pretrain --data runs/shards --tokenizer runs/tokenizer --output runs/pretrain \\\n"
            "      --preset tiny --max-steps 300 --workers 2 --set pretrain.strategy=fsdp"
        ),
        flags_to_config={
            "preset": "pretrain.preset",
            "max_steps": "pretrain.max_steps",
            "workers": "pretrain.workers",
        },
    ),
    Command(
        "run",
        "the whole lifecycle, crawl to served model, from one config",
        _run_args,
        _run,
        description=(
            "crawl → ingest → filter → dedup → tokenizer → tokenize → pretrain → conversations →\n"
            "sft → reward → rlhf → eval → serve → report, each under RUNDIR/<stage> with a\n"
            "manifest. A rerun skips stages whose config and inputs are unchanged and resumes an\n"
            "interrupted one; --from/--until select a range. Without data.crawl.seeds the crawl\n"
            "is of Python's own documentation server, started on 127.0.0.1 (the demo).\n\n"
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
        "perplexity, reward-model accuracy, RLHF win rate vs SFT",
        _eval_args,
        _eval,
        description=(
            "Evaluate a natal run directory: held-out perplexity of the pre-trained model,\n"
            "the reward model's held-out accuracy, and reward and win rate of the RLHF policy\n"
            "against the SFT model on held-out prompts, judged by the reward model.\n\n"
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
