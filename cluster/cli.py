"""``natal <stage>``: one subcommand per stage, all taking the same config.

The machinery lives here (config loading, ``--set``, errors as one line, the summary table);
the stages themselves are listed in :mod:`cluster.commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from cluster.commands import COMMANDS, Command
from cluster.config import load_config
from cluster.config.errors import NatalError

EPILOG = """\
every stage reads one config: the embedded demo config unless --config FILE is given,
then --set KEY=VALUE overrides (repeatable), then the stage's own flags.

examples:
  natal crawl --seed http://127.0.0.1:8000/ --output runs/crawl --max-pages 100
  natal ingest --input 'runs/crawl/*.warc.gz' --output runs/ingest
  natal filter --input runs/ingest --output runs/filter --set data.min_words=30
  natal <stage> --help          what a stage reads, writes and which flags it takes
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="natal",
        description="natal: from raw web crawl to a served, preference-tuned assistant, on Ray.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    for command in COMMANDS:
        stage = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(stage)
        if command.takes_config:
            group = stage.add_argument_group("config")
            group.add_argument(
                "--config", metavar="FILE", help="YAML config (default: the embedded demo config)"
            )
            group.add_argument(
                "--set",
                metavar="KEY=VALUE",
                action="append",
                default=[],
                dest="overrides",
                help="override one config field, e.g. --set data.min_words=50 (repeatable)",
            )
        stage.set_defaults(_command=command)
    return parser


def config_values(command: Command, args: argparse.Namespace) -> dict[str, Any]:
    """The config fields a stage's flags set: {dotted key: value} for flags that were given."""
    return {key: getattr(args, dest, None) for dest, key in command.flags_to_config.items()}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def print_summary(title: str, stats: dict[str, Any]) -> None:
    """The table every stage ends with: counts, breakdowns and seconds per step."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in stats.get("counts", {}).items():
        table.add_row(key, _fmt(value))
    for group, values in stats.get("breakdown", {}).items():
        for key, value in list(values.items())[:15]:
            table.add_row(f"{group}: {key}", _fmt(value))
    for step, secs in stats.get("seconds", {}).items():
        table.add_row(f"seconds: {step}", f"{secs:.1f}")
    for key, value in stats.items():
        if key not in ("stage", "counts", "breakdown", "seconds") and not isinstance(
            value, dict | list
        ):
            table.add_row(key, str(value))
    Console(stderr=True).print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args._command
    try:
        cfg = None
        if command.takes_config:
            cfg = load_config(args.config, args.overrides, config_values(command, args))
        stats = command.run(cfg, args)
    except NatalError as exc:
        print(f"natal {command.name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"natal {command.name}: interrupted", file=sys.stderr)
        return 130
    if isinstance(stats, dict) and stats:
        print_summary(f"natal {command.name}", stats)
    return int(stats.get("exit_code", 0)) if isinstance(stats, dict) else 0


if __name__ == "__main__":
    sys.exit(main())
