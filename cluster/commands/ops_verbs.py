"""Operations' verbs: plan (pipelines/training/plan.py), submit and jobs (cluster/jobs.py)."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.commands import data_verbs, run_verbs, serving_verbs, training_verbs
from cluster.commands.base import Command
from cluster.config import NatalConfig


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
    from pipelines.training import plan

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
        SUBMITTABLE,
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


COMMANDS: list[Command] = [
    Command(
        "plan",
        "estimate a training run: FLOPs, time, cost, energy, compute-optimal tokens",
        _plan_args,
        _plan,
        description=(
            "Training FLOPs ≈ 6·N·T (Kaplan et al. 2020); wall time = FLOPs / (K · peak · MFU);\n"
            "energy = K · watts · time, also in US homes' yearly use (EIA, ~10,500 kWh);\n"
            "compute-optimal tokens ≈ 20·N (Chinchilla). Sources of the constants: pipelines/training/plan.py.\n\n"
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
]

# Every verb a job can run: all but submit and jobs themselves.
SUBMITTABLE = [
    c.name
    for module in (data_verbs, training_verbs, serving_verbs, run_verbs)
    for c in module.COMMANDS
] + [c.name for c in COMMANDS if c.name not in ("submit", "jobs")]
