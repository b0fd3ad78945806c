"""Serving: the OpenAI-compatible endpoint and the rating page."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.commands.base import Command
from cluster.config import NatalConfig

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
