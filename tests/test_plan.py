"""The planning formulas against values computed by hand, and `natal plan` end to end."""

from __future__ import annotations

import argparse

import pytest

from cluster.cli import main
from cluster.commands.ops_verbs import _count
from pipelines.training import plan


def test_training_flops_is_six_n_t() -> None:
    # Chinchilla: 70e9 parameters × 1.4e12 tokens × 6 = 5.88e23 FLOPs.
    assert plan.training_flops(70e9, 1.4e12) == pytest.approx(5.88e23)


def test_chinchilla_tokens_are_twenty_per_parameter() -> None:
    assert plan.chinchilla_tokens(70e9) == pytest.approx(1.4e12)


def test_make_plan_by_hand() -> None:
    # 1e9 params × 20e9 tokens × 6 = 1.2e20 FLOPs; 8 × A100 (312e12) at 50 % = 1.248e15 FLOP/s
    # → 96,153.8 s = 26.709 h; 213.68 accelerator-hours; × $2 = $427.35;
    # 8 × 400 W × 96,153.8 s = 85.47 kWh = 0.00814 homes-year (10,500 kWh).
    p = plan.make_plan(1e9, 20e9, "a100", 8, mfu=0.5, price_per_hour=2.0)
    assert p.flops == pytest.approx(1.2e20)
    assert p.seconds == pytest.approx(96_153.846, rel=1e-6)
    assert p.accelerator_hours == pytest.approx(213.675, rel=1e-5)
    assert p.cost == pytest.approx(427.35, rel=1e-4)
    assert p.kwh == pytest.approx(85.470, rel=1e-4)
    assert p.homes_per_year == pytest.approx(85.470 / 10_500, rel=1e-4)
    assert p.chinchilla_tokens == pytest.approx(20e9)


def test_watts_and_peak_override_the_table() -> None:
    p = plan.make_plan(1e6, 1e9, "cpu", 2, mfu=0.1, watts=10.0, peak_flops=1e11)
    # 6e15 FLOPs / (2 × 1e11 × 0.1) = 300,000 s; 2 × 10 W × 300,000 s = 6e6 J = 1.6667 kWh.
    assert p.seconds == pytest.approx(300_000)
    assert p.kwh == pytest.approx(6e6 / 3.6e6)
    assert p.cost is None


def test_achieved_mfu_inverts_wall_seconds() -> None:
    flops, peak = plan.training_flops(1e8, 1e10), plan.PEAK_FLOPS["h100"]
    seconds = plan.wall_seconds(flops, peak, 4, 0.37)
    assert plan.achieved_mfu(flops, seconds, peak, 4) == pytest.approx(0.37)


def test_constants_are_the_published_figures() -> None:
    assert plan.PEAK_FLOPS["h100"] == 989e12 == plan.PEAK_FLOPS["h200"]
    assert plan.PEAK_FLOPS["a100"] == 312e12
    assert plan.TDP_WATTS == {"h100": 700.0, "h200": 700.0, "a100": 400.0, "cpu": 6.25}


@pytest.mark.parametrize(
    ("text", "value"), [("7B", 7e9), ("1.4T", 1.4e12), ("300M", 3e8), ("5e6", 5e6), ("12k", 12e3)]
)
def test_count_suffixes(text: str, value: float) -> None:
    assert _count(text) == pytest.approx(value)


def test_count_rejects_garbage() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _count("seven")


def test_natal_plan_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["plan", "--params", "1B", "--tokens", "20B", "--accelerator", "a100", "--count", "8"]
        + ["--mfu", "0.5", "--price-per-hour", "2"]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "1.200e+20" in err and "26.7 h" in err and "427" in err and "213.7" in err


def test_natal_plan_bad_mfu_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "--params", "1B", "--tokens", "20B", "--mfu", "1.5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "plan.mfu" in err and "Traceback" not in err


def test_run_vs_plan_puts_measured_beside_planned():
    from pipelines.training.plan import run_vs_plan

    # 1M params × 1M tokens = 6e12 FLOPs; 2 CPU cores at 192 GFLOP/s, MFU 0.4 → 39.0625 s
    out = run_vs_plan(1e6, 1e6, seconds=10.0, accelerator="cpu", count=2, mfu=0.4)
    assert out["flops_6NT"] == 6e12
    assert out["plan_seconds"] == pytest.approx(39.0625)
    assert out["measured_mfu_vs_datasheet_peak"] == pytest.approx(6e12 / 10 / (2 * 192e9))
    assert out["measured_kwh_estimate"] == pytest.approx(6.25 * 2 * 10 / 3.6e6)
    assert out["plan_kwh"] == pytest.approx(6.25 * 2 * 39.0625 / 3.6e6)
