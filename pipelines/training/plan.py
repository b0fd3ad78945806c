"""How big a training run is before it runs: FLOPs, wall time, accelerator-hours, cost, energy.

Pure formulas and their constants, each with its source, so that ``natal plan`` and
``natal pretrain`` (which reports its measured FLOPs, MFU and energy against the plan) agree.

- Training FLOPs ≈ 6·N·T for N parameters and T tokens: 2·N per token forward, 4·N backward
  (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1).
- Compute-optimal tokens ≈ 20·N (Hoffmann et al. 2022, "Training Compute-Optimal Large
  Language Models" (Chinchilla), table 3: 70B parameters ↔ 1.4T tokens).
- Wall time = FLOPs / (count · peak FLOP/s · MFU). MFU (model FLOPs utilization, Chowdhery et
  al. 2022, PaLM, appendix B) is the fraction of peak a run achieves; PaLM reported 46.2 %,
  so 0.4 is the default.
- Energy = count · watts · hours (the accelerators' board power only: no host, network or
  cooling; multiply by your data centre's PUE for the facility figure).
"""

from __future__ import annotations

from dataclasses import dataclass

# Peak dense bf16 tensor FLOP/s (without sparsity) and board power, per accelerator.
#   h100: NVIDIA H100 SXM5 datasheet: 989 TFLOPS bf16 dense (1,979 with sparsity), 700 W.
#   h200: NVIDIA H200 SXM datasheet: same compute die as H100 SXM, 989 TFLOPS, up to 700 W.
#   a100: NVIDIA A100 SXM4 datasheet: 312 TFLOPS bf16 dense, 400 W.
#   cpu:  ONE x86 core with AVX-512 and two FMA units (Intel 64 and IA-32 Optimization
#         Reference Manual): 2 units × 16 fp32 lanes × 2 FLOP × 3.0 GHz = 192 GFLOP/s;
#         power: a 56-core Xeon Platinum 8480+ is 350 W TDP (Intel ARK) → 6.25 W per core.
PEAK_FLOPS: dict[str, float] = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "cpu": 192e9}
TDP_WATTS: dict[str, float] = {"h100": 700.0, "h200": 700.0, "a100": 400.0, "cpu": 6.25}

FLOPS_PER_PARAM_TOKEN = 6  # Kaplan et al. 2020
CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022
DEFAULT_MFU = 0.4  # PaLM: 46.2 % (Chowdhery et al. 2022); large runs commonly report 35–50 %
# US average residential electricity use, ~10,500 kWh per home and year (U.S. Energy
# Information Administration, "How much electricity does an American home use?", FAQ).
HOME_KWH_PER_YEAR = 10_500.0


def training_flops(params: float, tokens: float) -> float:
    """Model FLOPs of training ``params`` parameters on ``tokens`` tokens: ≈ 6·N·T."""
    return FLOPS_PER_PARAM_TOKEN * params * tokens


def chinchilla_tokens(params: float) -> float:
    """The compute-optimal number of training tokens for ``params`` parameters: ≈ 20·N."""
    return CHINCHILLA_TOKENS_PER_PARAM * params


def wall_seconds(flops: float, peak_flops: float, count: int, mfu: float) -> float:
    """Seconds to do ``flops`` on ``count`` accelerators running at ``mfu`` of their peak."""
    return flops / (count * peak_flops * mfu)


def energy_kwh(watts: float, count: int, seconds: float) -> float:
    """Energy of ``count`` devices drawing ``watts`` each for ``seconds``, in kWh."""
    return watts * count * seconds / 3.6e6


def homes_per_year(kwh: float) -> float:
    """``kwh`` as the yearly electricity use of that many average US homes."""
    return kwh / HOME_KWH_PER_YEAR


def achieved_mfu(flops: float, seconds: float, peak_flops: float, count: int) -> float:
    """MFU a run achieved: the model FLOPs it did per second over the hardware's peak."""
    return flops / seconds / (peak_flops * count)


@dataclass(frozen=True)
class Plan:
    """The estimate ``natal plan`` prints."""

    params: float
    tokens: float
    accelerator: str
    count: int
    mfu: float
    flops: float
    seconds: float
    accelerator_hours: float
    kwh: float
    homes_per_year: float
    chinchilla_tokens: float
    cost: float | None

    def to_stats(self) -> dict:
        """The plan as the stats dict the CLI prints as a table."""
        cost = f"{self.cost:,.0f}" if self.cost is not None else "give --price-per-hour"
        return {
            "stage": "plan",
            "parameters": f"{self.params:.3g}",
            "tokens": f"{self.tokens:.3g}",
            "accelerator": f"{self.count} × {self.accelerator} at MFU {self.mfu:.0%}",
            "training FLOPs (6·N·T)": f"{self.flops:.3e}",
            "wall time": _duration(self.seconds),
            "accelerator-hours": f"{self.accelerator_hours:,.1f}",
            "cost": cost,
            "energy (kWh, accelerators only)": f"{self.kwh:,.1f}",
            "energy (US homes for a year)": f"{self.homes_per_year:,.2f}",
            "compute-optimal tokens (20·N)": f"{self.chinchilla_tokens:.3g}",
            "tokens / compute-optimal": f"{self.tokens / self.chinchilla_tokens:.2f}",
        }


def make_plan(
    params: float,
    tokens: float,
    accelerator: str,
    count: int,
    mfu: float = DEFAULT_MFU,
    price_per_hour: float | None = None,
    watts: float | None = None,
    peak_flops: float | None = None,
) -> Plan:
    """Estimate a run; ``price_per_hour`` is per accelerator-hour, ``watts`` per accelerator."""
    peak = peak_flops if peak_flops is not None else PEAK_FLOPS[accelerator]
    power = watts if watts is not None else TDP_WATTS[accelerator]
    flops = training_flops(params, tokens)
    seconds = wall_seconds(flops, peak, count, mfu)
    hours = count * seconds / 3600
    kwh = energy_kwh(power, count, seconds)
    return Plan(
        params=params,
        tokens=tokens,
        accelerator=accelerator,
        count=count,
        mfu=mfu,
        flops=flops,
        seconds=seconds,
        accelerator_hours=hours,
        kwh=kwh,
        homes_per_year=homes_per_year(kwh),
        chinchilla_tokens=chinchilla_tokens(params),
        cost=hours * price_per_hour if price_per_hour is not None else None,
    )


def run_vs_plan(
    params: float,
    tokens: float,
    seconds: float,
    accelerator: str,
    count: int,
    mfu: float = DEFAULT_MFU,
    watts: float | None = None,
) -> dict[str, float]:
    """What a finished run measured, beside what :func:`make_plan` predicted for it."""
    plan = make_plan(params, tokens, accelerator, count, mfu, watts=watts)
    power = watts if watts is not None else TDP_WATTS[accelerator]
    kwh = energy_kwh(power, count, seconds)
    return {
        "parameters": params,
        "flops_6NT": plan.flops,
        "plan_seconds": plan.seconds,
        "measured_seconds": seconds,
        "plan_mfu": mfu,
        "measured_mfu_vs_datasheet_peak": achieved_mfu(
            plan.flops, seconds, PEAK_FLOPS[accelerator], count
        ),
        "plan_kwh": plan.kwh,
        "measured_kwh_estimate": kwh,
    }


def _duration(seconds: float) -> str:
    """Seconds in a unit that reads well: 42.0 s, 26.7 h, 12.0 days."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:.1f} s"
