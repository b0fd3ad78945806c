"""``natal report RUNDIR``: one self-contained HTML page of a run, plots inline.

Every stage directory under RUNDIR contributes what it has: its manifest (time), its
``stats.json`` (counts, and a bar chart per breakdown: removals by filter, documents by
language, ...), its ``metrics.jsonl`` (loss or reward curves), and stage-specific artifacts
(dedup cluster sizes, the achieved source mixture, the before/after answers of ``eval``).
A stage that did not run is listed as such; the page never needs the logs.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from cluster.headlines import rlhf_verdict

CURVES = {
    "pretrain": ("loss", "val_loss"),
    "sft": ("loss", "val_loss"),
    "reward": ("loss", "val_accuracy", "accuracy"),
    "dpo": ("loss", "margin", "accuracy"),
    "rlhf": ("reward_mean", "kl", "response_length"),
}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _figure(width: float = 7, height: float = 3.2, columns: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height), squeeze=False)


def bar_chart(title: str, values: dict[str, float], limit: int = 20) -> str:
    items = sorted(values.items(), key=lambda kv: -kv[1])[:limit]
    if not items:
        return ""
    fig, axes = _figure(7, 0.3 * len(items) + 1)
    ax = axes[0][0]
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="tab:blue")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def curves(title: str, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    present = [k for k in keys if any(k in r for r in rows)]
    if not present:
        return ""
    fig, axes = _figure(4.2 * len(present), 3, columns=len(present))
    for ax, key in zip(axes[0], present, strict=True):
        points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o", markersize=2)
        ax.set_title(f"{title}: {key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return _png(fig)


def cluster_sizes(dedup_dir: Path) -> str:
    path = dedup_dir / "clusters.parquet"
    if not path.exists():
        return ""
    import pyarrow.parquet as pq

    clusters = pq.read_table(path, columns=["cluster"]).column("cluster").to_pylist()
    sizes = Counter(Counter(clusters).values())
    if not sizes:
        return "<p>No duplicate clusters.</p>"
    fig, axes = _figure()
    ax = axes[0][0]
    ax.bar([str(k) for k in sorted(sizes)], [sizes[k] for k in sorted(sizes)], color="tab:purple")
    ax.set_title("duplicate clusters by size")
    ax.set_xlabel("documents in the cluster")
    ax.set_ylabel("clusters")
    return _png(fig)


def mixture(tokenize_dir: Path) -> str:
    index = _json(tokenize_dir / "index.json")
    if not index or "mixture" not in index:
        return ""
    mix = index["mixture"]
    sources = sorted(set(mix.get("achieved", {})) | set(mix.get("target", {}) or {}))
    fig, axes = _figure()
    ax = axes[0][0]
    width = 0.4
    for offset, key in ((-width / 2, "target"), (width / 2, "achieved")):
        values = [(mix.get(key) or {}).get(s, 0.0) for s in sources]
        ax.bar([i + offset for i in range(len(sources))], values, width, label=key)
    ax.set_xticks(range(len(sources)), sources)
    ax.set_title("source mixture (share of tokens)")
    ax.legend()
    return _png(fig)


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>" if cells else ""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def examples_table(examples: list[dict[str, Any]], judges: list[str]) -> str:
    """Answers before and after RLHF, side by side, with each judge's two scores."""
    head = (
        "<tr><th>prompt</th><th>before (SFT)</th><th>after (RLHF)</th>"
        + "".join(f"<th>{html.escape(j)}: SFT → RLHF</th>" for j in judges)
        + "</tr>"
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(ex.get(k, '')))}</td>" for k in ("prompt", "baseline", "policy")
        )
        + "".join(
            "<td>{} → {}</td>".format(
                *(
                    _fmt(ex.get("scores", {}).get(j, {}).get(side))
                    for side in ("baseline", "policy")
                )
            )
            for j in judges
        )
        + "</tr>"
        for ex in examples[:8]
    )
    return f"<table class='answers'>{head}{body}</table>"


def stage_section(name: str, stage_dir: Path) -> str:
    manifest = _json(stage_dir / "manifest.json") or {}
    stats = _json(stage_dir / "stats.json") or manifest.get("stats") or {}
    parts = [f"<h2 id='{name}'>{html.escape(name)}</h2>"]
    if not manifest:
        return parts[0] + "<p class='muted'>not run</p>"
    status = manifest.get("status", "?")
    seconds = manifest.get("seconds")
    parts.append(
        f"<p class='muted'>{status}"
        + (f", {seconds:,.0f} s" if seconds else "")
        + f" · code {html.escape(str(manifest.get('code_version', '?')))}</p>"
    )
    scalars = dict(stats.get("counts", {}))
    for key, value in stats.items():
        if key not in ("counts", "breakdown", "seconds", "stage") and isinstance(
            value, int | float | str
        ):
            scalars.setdefault(key, value)
    charts = []
    for group, values in stats.get("breakdown", {}).items():
        numeric = {k: v for k, v in values.items() if isinstance(v, int | float)}
        if len(numeric) > 1:
            charts.append(bar_chart(f"{name}: {group}", numeric))
        else:  # one bar says nothing a table row does not
            scalars.update({f"{group}: {k}": v for k, v in values.items()})
    parts.append(_table(list(scalars.items())))
    parts.extend(charts)
    if name in CURVES:
        parts.append(curves(name, _jsonl(stage_dir / "metrics.jsonl"), CURVES[name]))
    if name == "dedup":
        parts.append(cluster_sizes(stage_dir))
    if name == "tokenize":
        parts.append(mixture(stage_dir))
    if name == "eval":
        parts.append(eval_section(_json(stage_dir / "eval.json") or {}, stats))
    if name == "serve" and stats.get("reply") is not None:
        parts.append(f"<p>Served reply: <q>{html.escape(str(stats['reply']))}</q></p>")
    return "\n".join(p for p in parts if p)


def eval_section(result: dict[str, Any], stats: dict[str, Any]) -> str:
    """Perplexity, reward-model accuracy, then one row per judge of RLHF vs SFT on the
    held-out prompts (which judge the policy trained against is said), and the answers."""
    comparison = result.get("rlhf_vs_sft", {})
    judges = comparison.get("judges", {})
    parts = [
        _table(
            [
                ("held-out perplexity (pretrain)", result.get("pretrain", {}).get("val_ppl")),
                ("reward model accuracy (held-out pairs)", result.get("reward_model_accuracy")),
                ("held-out prompts (never trained on)", comparison.get("prompts")),
            ]
        )
    ]
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(cell))}</td>"
            for cell in (
                verdict["label"],
                "yes" if verdict["independent"] else "no: the policy trained against it",
                _fmt(verdict["reward_baseline"]),
                _fmt(verdict["reward_policy"]),
                _fmt(verdict["win_rate"]),
                "{}–{}".format(*(_fmt(x) for x in verdict["win_rate_ci95"])),
            )
        )
        + "</tr>"
        for verdict in judges.values()
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("judge", "independent", "SFT reward", "RLHF reward", "RLHF win rate", "95% CI")
    )
    parts.append(f"<table><tr>{head}</tr>{rows}</table>")
    verdict = rlhf_verdict(stats)
    if verdict:
        parts.append(f"<p><strong>{html.escape(verdict)}.</strong></p>")
    parts.append(examples_table(comparison.get("examples", []), list(judges)))
    return "\n".join(parts)


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
vertical-align:top;text-align:left}.answers td{max-width:360px;white-space:pre-wrap}
.muted{color:#777}img{max-width:49%;display:inline-block;vertical-align:top;margin:.4em .4em 0 0}nav a{margin-right:.8em}
"""


def write_report(run_dir: str | Path, stages: list[str]) -> Path:
    """Write ``RUNDIR/report.html`` (a section per stage named, in that order); its path."""
    root = Path(run_dir)
    names = stages
    manifests = {n: _json(root / n / "manifest.json") or {} for n in names}
    times = {n: m["seconds"] for n, m in manifests.items() if m.get("seconds")}
    body = [
        "<h1>natal run report</h1>",
        f"<p class='muted'>{html.escape(str(root.resolve()))}</p>",
        "<nav>" + "".join(f"<a href='#{n}'>{n}</a>" for n in names) + "</nav>",
        "<h2>time per stage</h2>",
        bar_chart("seconds per stage", times),
    ]
    body += [stage_section(n, root / n) for n in names]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>natal report</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    path = root / "report.html"
    path.write_text(page)
    return path
