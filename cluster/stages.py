"""The lifecycle's stages in order, each wired to its pipeline and to the outputs before it.

``RUNDIR/<stage>/`` holds each stage's output; a stage reads only what earlier stages left
there (never an in-memory hand-off), so any of them can run alone, resumed, or as a Ray job.
Where the config names no conversations, preferences or prompts (``lifecycle.*``), the
``conversations`` stage derives them from the curated documents (see pipelines/demo/derive.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster import report
from cluster.config import NatalConfig
from cluster.lifecycle import Stage

DERIVED = "conversations"


def _documents(root: Path) -> str:
    return str(root / "dedup" / "documents")


def _crawl(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.data import crawl

    seeds = cfg.data.crawl.seeds
    if seeds:
        return crawl.run(cfg, seeds=seeds, output=str(root / "crawl"))
    from pipelines.demo.website import pydoc_server

    with pydoc_server() as url:  # the embedded default: Python's own documentation server
        return crawl.run(cfg, seeds=[url], output=str(root / "crawl"))


def _ingest(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.data import ingest

    return ingest.run(cfg, inputs=[str(root / "crawl" / "*.warc.gz")], output=str(root / "ingest"))


def _filter(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.data import quality_filter as filter_stage

    return filter_stage.run(cfg, input=str(root / "ingest"), output=str(root / "filter"))


def _dedup(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.data.dedup import deduplicate

    documents = str(root / "filter" / "documents")
    return deduplicate.run(cfg, inputs=[documents], output=str(root / "dedup"), against=None)


def _tokenizer(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.pretrain import bpe

    return bpe.run(cfg, inputs=[_documents(root)], output=str(root / "tokenizer"))


def _tokenize(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.pretrain import tokenize

    return tokenize.run(
        cfg,
        [_documents(root)],
        tokenizer_dir=str(root / "tokenizer"),
        output=str(root / "tokenize"),
    )


def _pretrain(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.pretrain import llama

    return llama.run(
        cfg,
        data=str(root / "tokenize"),
        tokenizer=str(root / "tokenizer"),
        output=str(root / "pretrain"),
    )


def _conversations(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    """SFT rows, judged preferences and held-out prompts from the curated documents."""
    import pyarrow.dataset as ds

    from pipelines.demo import derive

    table = ds.dataset(_documents(root), format="parquet").to_table(columns=["url", "text"])
    items = derive.qa_items(table.to_pylist())
    train, held = derive.split_items(items, seed=cfg.lifecycle.seed)
    out = root / DERIVED
    files = {
        "sft.jsonl": derive.sft_rows(train),
        "preferences.jsonl": derive.preference_rows(train, seed=cfg.lifecycle.seed),
        "prompts.jsonl": derive.prompt_rows(held),
    }
    for name, rows in files.items():
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = {name.split(".")[0]: len(rows) for name, rows in files.items()}
    return {"stage": DERIVED, "counts": {"modules": len(items), **counts}, "judge": derive.JUDGE}


def _data(cfg_files: list[str], root: Path, name: str) -> list[str]:
    return list(cfg_files) or [str(root / DERIVED / name)]


def _sft(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.posttrain import sft

    data = _data(cfg.lifecycle.sft_data, root, "sft.jsonl")
    model = str(root / "pretrain" / "final")
    return sft.run(cfg, model=model, data=data, output=str(root / "sft"))


def _preference_split(cfg: NatalConfig, held: bool) -> Any:
    from pipelines.posttrain.finetune import PromptSplit

    fraction = cfg.lifecycle.judge_fraction
    return PromptSplit(fraction, cfg.lifecycle.seed, held) if fraction > 0 else None


def _reward(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    """The reward model RLHF trains against, on the preference prompts the judge leaves."""
    from pipelines.posttrain import reward_model

    data = _data(cfg.lifecycle.preference_data, root, "preferences.jsonl")
    return reward_model.run(
        cfg,
        model=str(root / "sft" / "final"),
        data=data,
        output=str(root / "reward"),
        split=_preference_split(cfg, held=False),
    )


def _judge(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    """An independent judge for natal eval: a reward model of the other preference prompts."""
    from pipelines.posttrain import reward_model

    split = _preference_split(cfg, held=True)
    if split is None:
        return {"stage": "judge", "skipped": "lifecycle.judge_fraction is 0: no judge model"}
    data = _data(cfg.lifecycle.preference_data, root, "preferences.jsonl")
    stats = reward_model.run(
        cfg, model=str(root / "sft" / "final"), data=data, output=str(root / "judge"), split=split
    )
    return {**stats, "stage": "judge"}


def _prompts(cfg: NatalConfig, root: Path) -> str:
    return cfg.lifecycle.prompts or str(root / DERIVED / "prompts.jsonl")


def _rlhf(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.rl import rlhf

    if cfg.rlhf.reward_model is None and not cfg.rlhf.reward_fns:
        cfg = cfg.model_copy(deep=True)
        cfg.rlhf.reward_model = str(root / "reward" / "final")
    policy = str(root / "sft" / "final")
    return rlhf.run(cfg, policy=policy, prompts=_prompts(cfg, root), output=str(root / "rlhf"))


def _eval(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from pipelines.rl import evaluate

    return evaluate.run_lifecycle_eval(cfg, root, evaluate.heldout_prompts(root))


def _serve(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    from serving import openai_app

    return openai_app.run(cfg, str(root / "rlhf" / "final"), check=cfg.lifecycle.serve_check)


def _report(cfg: NatalConfig, root: Path) -> dict[str, Any]:
    path = report.write_report(root, [s.name for s in STAGES])
    return {"stage": "report", "report": str(path)}


STAGES: list[Stage] = [
    Stage("crawl", ("data.crawl",), (), _crawl, "WARC.gz of the seed sites"),
    Stage("ingest", ("data.ingest",), ("crawl",), _ingest, "documents/ (Parquet)"),
    Stage("filter", ("data.filter", "data.min_words"), ("ingest",), _filter, "documents, removed"),
    Stage("dedup", ("data.dedup",), ("filter",), _dedup, "documents, removed, clusters"),
    Stage("tokenizer", ("tokenizer",), ("dedup",), _tokenizer, "HF tokenizer"),
    Stage("tokenize", ("tokenize",), ("dedup", "tokenizer"), _tokenize, "token shards"),
    Stage("pretrain", ("pretrain",), ("tokenize",), _pretrain, "final/ model, metrics"),
    Stage(DERIVED, ("lifecycle",), ("dedup",), _conversations, "SFT, preference, prompt JSONL"),
    Stage("sft", ("sft", "lifecycle"), ("pretrain", DERIVED), _sft, "final/ chat model"),
    Stage("reward", ("reward", "lifecycle"), ("sft", DERIVED), _reward, "final/ reward model"),
    Stage("judge", ("reward", "lifecycle"), ("sft", DERIVED), _judge, "final/ eval's judge"),
    Stage("rlhf", ("rlhf", "lifecycle"), ("sft", "reward", DERIVED), _rlhf, "final/ policy"),
    Stage(
        "eval",
        ("lifecycle",),
        ("rlhf", "sft", "reward", "judge", "pretrain"),
        _eval,
        "eval.json: held-out win rates",
    ),
    Stage("serve", ("serve", "lifecycle"), ("rlhf",), _serve, "one chat request answered"),
    Stage("report", (), ("eval", "serve"), _report, "report.html"),
]


def curate_stages(inputs: list[str]) -> list[Stage]:
    """``natal curate``: ingest the given inputs, then filter and dedup, under one directory."""

    def ingest_inputs(cfg: NatalConfig, root: Path) -> dict[str, Any]:
        from pipelines.data import ingest

        return ingest.run(cfg, inputs=list(inputs), output=str(root / "ingest"))

    by_name = {s.name: s for s in STAGES}
    source = Stage("ingest", ("data.ingest",), (), ingest_inputs, "documents/ (Parquet)")
    return [source, by_name["filter"], by_name["dedup"]]
