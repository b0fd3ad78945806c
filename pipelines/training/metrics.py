"""Training metrics: a JSONL log, a progress bar, MFU against a measured peak, a PNG curve."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from pipelines.data import storage

METRICS_FILE = "metrics.jsonl"


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token of any Hugging Face model (PaLM appendix B): 6 × the weights
    of its matmul layers (``nn.Linear``, GPT-2's ``Conv1D``; embeddings are lookups, a
    sequence classifier's head is one row) + 12·L·d_attn·T for attention. Mixture-of-experts
    layers count every expert (an upper bound)."""
    from transformers.pytorch_utils import Conv1D

    matmul = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear | Conv1D)
    )
    config = model.config.get_text_config()
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 6.0 * matmul + 12.0 * config.num_hidden_layers * heads * head_dim * seq_len


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilization: achieved training FLOP/s over the peak of all workers."""
    if peak_flops <= 0 or flops_per_token <= 0:
        return 0.0
    return tokens_per_s * flops_per_token / peak_flops


def measure_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a square matmul on this worker: the ceiling MFU is measured against."""
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up
    # a GPU matmul of 4096² takes ~0.1 ms: time several per sample, or launch jitter dominates
    repeats, best = (10 if device.type == "cuda" else 1), float("inf")
    for _ in range(5):  # best of 5: the probe must not see a busy machine's worst moment
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * repeats / best


class Window:
    """Sums of the steps since the last log line."""

    def __init__(self) -> None:
        self.flush()

    def add(self, loss: float, tokens: int, seconds: float, extra: dict[str, float]) -> None:
        self.steps += 1
        self.loss += loss
        self.tokens += tokens
        self.seconds += seconds
        for key, value in extra.items():
            self.extra[key] = self.extra.get(key, 0.0) + value

    def flush(self) -> dict[str, float]:
        """The window's means (tokens and seconds summed), then start a new window."""
        steps = max(getattr(self, "steps", 0), 1)
        out = {"loss": getattr(self, "loss", 0.0) / steps}
        out.update({k: v / steps for k, v in getattr(self, "extra", {}).items()})
        out.update(tokens=getattr(self, "tokens", 0), seconds=getattr(self, "seconds", 0.0))
        self.steps, self.loss, self.tokens, self.seconds, self.extra = 0, 0.0, 0, 0.0, {}
        return out


def read(run_dir: str) -> list[dict[str, Any]]:
    path = storage.join(run_dir, METRICS_FILE)
    fs, local = storage.filesystem(path)
    if not fs.exists(local):
        return []
    return [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]


def reset(run_dir: str) -> None:
    """A fresh run (no checkpoint) starts an empty log."""
    fs, path = storage.filesystem(storage.join(run_dir, METRICS_FILE))
    if fs.exists(path):
        fs.rm(path)


class MetricsLog:
    """``RUNDIR/metrics.jsonl``: one object per logged step; a resumed run drops later lines."""

    def __init__(self, run_dir: str, start_step: int) -> None:
        self.path = storage.join(run_dir, METRICS_FILE)
        self.rows = [row for row in read(run_dir) if row.get("step", 0) <= start_step]
        self._flush()

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append({k: v if k == "time" else _round(v) for k, v in row.items()})
        self._flush()

    def _flush(self) -> None:
        storage.write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))


def _round(value: Any) -> Any:
    return float(f"{value:.6g}") if isinstance(value, float) else value


class Progress:
    """The driver's progress bar of a training run, captioned with its latest metrics.

    Always drawn by the driver process: a bar drawn inside a Ray worker reaches the terminal
    as one new line per redraw (Ray's log forwarding), so workers only write metrics.jsonl.
    """

    def __init__(self, total: int, initial: int, name: str) -> None:
        from tqdm import tqdm

        from cluster.console import terminal

        self.bar = tqdm(
            total=total, initial=initial, desc=name, mininterval=1.0, leave=False, file=terminal()
        )
        self.name, self.step = name, initial

    def update(self, step: int, row: dict[str, Any]) -> None:
        self.bar.update(step - self.step)
        self.step = step
        shown = {k: row[k] for k in ("loss", "val_loss", "tokens_per_s", "mfu") if k in row}
        text = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
        self.bar.set_description(f"{self.name} {text}".strip())

    def close(self) -> None:
        self.bar.close()


@contextmanager
def watch(run_dir: str, total: int, name: str, every_s: float = 1.0) -> Iterator[None]:
    """Draw a :class:`Progress` bar from ``run_dir``'s metrics.jsonl while the body runs
    (the driver waiting on Ray Train workers)."""
    stop = threading.Event()
    bar = Progress(total, 0, name)

    def poll() -> None:
        while not stop.wait(every_s):
            try:
                rows = read(run_dir)
            except (OSError, ValueError):  # a line being written; read it next time
                continue
            if rows and rows[-1].get("step", 0) != bar.step:
                bar.update(rows[-1]["step"], rows[-1])

    thread = threading.Thread(target=poll, name=f"{name}-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()


def summarize(run_dir: str) -> dict[str, Any]:
    """First/last loss, last validation loss and perplexity, mean tokens/s and MFU."""
    rows = read(run_dir)
    if not rows:
        return {}
    val = [r for r in rows if "val_loss" in r]
    speed = rows[1:] or rows  # the first window includes warm-up
    out = {
        "first_loss": rows[0]["loss"],
        "final_loss": rows[-1]["loss"],
        "tokens_per_s": round(sum(r["tokens_per_s"] for r in speed) / len(speed), 1),
        "mfu": round(sum(r["mfu"] for r in speed) / len(speed), 5),
    }
    if val:
        out["val_loss"] = val[-1]["val_loss"]
        if "val_ppl" in val[-1]:
            out["val_ppl"] = val[-1]["val_ppl"]
    return out


def plot(run_dir: str) -> str | None:
    """``RUNDIR/loss.png``: training and validation loss against the step."""
    rows = read(run_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="train loss")
    val = [r for r in rows if "val_loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    path = storage.join(run_dir, "loss.png")
    fs, local = storage.filesystem(path)
    with fs.open(local, "wb") as fh:
        fh.write(buffer.getvalue())
    return path
