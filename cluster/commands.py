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

CHAT_FORMATS = ["messages", "sharegpt", "alpaca", "dolly", "self_instruct", "oasst", "prompt_response"]
PAIR_FORMATS = ["hh_rlhf", "llamafactory", "prompt_pairs", "chat_pairs", "rating_export", "oasst"]


def _post_training_args(formats: list[str], data_help: str, output_help: str):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, metavar="DIR", help="HF model dir (with tokenizer)")
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
            "Corrupt records are counted in stats.json and skipped.\n\n"
            "example:\n  natal ingest --input 's3://bucket/crawl/*.warc.gz' --output runs/ingest"
        ),
        flags_to_config={"source": "data.ingest.source", "extractor": "data.ingest.extractor"},
    ),
    Command(
        "filter",
        "quality filters: URL, language, Gopher, C4, FineWeb, PII",
        _filter_args,
        _filter,
        description=(
            "Apply the quality rules of data.filter to documents; kept ones go to\n"
            "DIR/documents, removed ones to DIR/removed with a reason and the measured value.\n\n"
            "example:\n  natal filter --input runs/ingest --output runs/filter --set data.min_words=30"
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
]
