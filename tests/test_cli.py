"""The CLI machinery (cluster/cli.py): every stage's --help renders, flags reach the config."""

import pytest

from cluster import cli
from cluster.commands import COMMANDS
from cluster.config import load_config


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_stage_help_renders(name, capsys):
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args([name, "--help"])
    assert done.value.code == 0
    assert f"usage: natal {name}" in capsys.readouterr().out


def test_lora_flags_set_the_sft_section():
    args = cli.build_parser().parse_args(
        ["sft", "--model", "m", "--data", "d", "--output", "o", "--lora-r", "16"]
        + ["--lora-alpha", "32", "--lora-targets", "q_proj", "v_proj"]
    )
    cfg = load_config(None, [], cli.config_values(args._command, args)).sft
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_targets) == (16, 32.0, ["q_proj", "v_proj"])
