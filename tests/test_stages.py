"""The lifecycle's wiring (cluster/stages.py), with every pipeline replaced by a recorder.

Each stage must read exactly what the stages before it wrote under RUNDIR (no stage may
reach past its declared upstream, or the skip-when-unchanged logic goes stale), honour the
config's data paths, and reruns, ``--from`` and ``--until`` must run what changed, no more.
The real stage functions run; only the pipelines behind them (and ``ray.init``) are fakes.
"""

import glob
import importlib
import inspect
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster import cli
from cluster.config import load_config
from cluster.config.errors import ConfigError
from cluster.lifecycle import run_lifecycle
from cluster.stages import STAGES

NAMES = [s.name for s in STAGES]
UPSTREAM = {s.name: s.upstream for s in STAGES}
SEED_URL = "http://127.0.0.1:9/"
PIPELINES = {  # stage → (module, function) that its stage function calls
    "crawl": ("pipelines.data.crawl", "run"),
    "ingest": ("pipelines.data.ingest", "run"),
    "filter": ("pipelines.data.quality_filter", "run"),
    "dedup": ("pipelines.data.dedup.deduplicate", "run"),
    "tokenizer": ("pipelines.pretrain.bpe", "run"),
    "tokenize": ("pipelines.pretrain.tokenize", "run"),
    "pretrain": ("pipelines.pretrain.llama", "run"),
    "sft": ("pipelines.posttrain.sft", "run"),
    "reward": ("pipelines.posttrain.reward_model", "run"),
    "rlhf": ("pipelines.rl.rlhf", "run"),
    "eval": ("pipelines.rl.evaluate", "run_lifecycle_eval"),
    "serve": ("serving.openai_app", "run"),
    "report": ("cluster.report", "write_report"),
}
WRITES = {  # what each fake leaves in its output directory: what the next stages read
    "crawl": "part-00000.warc.gz",
    "ingest": "documents/part-0.parquet",
    "filter": "documents/part-0.parquet",
    "dedup": "documents/part-0.parquet",
    "tokenizer": "tokenizer.json",
    "tokenize": "index.json",
    "pretrain": "final/config.json",
    "sft": "final/config.json",
    "reward": "final/config.json",
    "rlhf": "final/config.json",
    "judge": "final/config.json",
}
EXPECTED_READS = {  # argument → path under RUNDIR, for the default (demo) config
    "ingest": {"inputs": ["crawl/*.warc.gz"]},
    "filter": {"input": "ingest"},
    "dedup": {"inputs": ["filter/documents"], "against": None},
    "tokenizer": {"inputs": ["dedup/documents"]},
    "tokenize": {"inputs": ["dedup/documents"], "tokenizer_dir": "tokenizer"},
    "pretrain": {"data": "tokenize", "tokenizer": "tokenizer"},
    "sft": {"model": "pretrain/final", "data": ["conversations/sft.jsonl"]},
    "reward": {"model": "sft/final", "data": ["conversations/preferences.jsonl"]},
    "judge": {"model": "sft/final", "data": ["conversations/preferences.jsonl"]},
    "rlhf": {
        "policy": "sft/final",
        "prompts": "conversations/prompts.jsonl",
        "reward_model": "reward/final",
    },
    "eval": {"prompts_file": "rlhf/heldout_prompts.jsonl"},
    "serve": {"model_dir": "rlhf/final"},
}
# fixed paths under RUNDIR that the real eval and report read beyond their arguments
EVAL_READS = [
    "pretrain/final",
    "tokenize",
    "reward/final",
    "judge/final",
    "rlhf/final",
    "sft/final",
]
DOCS = pa.table(
    {
        "url": [f"http://127.0.0.1:9/{m}.html" for m in ("csv", "json", "os", "re")],
        "text": [f"The {m} module does useful things. " + "word " * 30 for m in "abcd"],
    }
)


def closure(name: str) -> set[str]:
    """Every stage ``name`` depends on, directly or through its upstream."""
    seen: set[str] = set()
    todo = list(UPSTREAM[name])
    while todo:
        if (up := todo.pop()) not in seen:
            seen.add(up)
            todo.extend(UPSTREAM[up])
    return seen


def downstream(changed: set[str]) -> list[str]:
    return [n for n in NAMES if n in changed or closure(n) & changed]


def rel(value, root: Path):
    if isinstance(value, list):
        return [rel(v, root) for v in value]
    if isinstance(value, str) and value.startswith(str(root)):
        return Path(value).relative_to(root).as_posix()
    return value


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Recorded pipeline calls: (stage, {argument: path relative to RUNDIR}, missing inputs).

    Each fake binds its arguments to the real function's signature, notes which input paths
    did not exist when it was called, and writes its output (WRITES) where it was told to.
    """
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("a wiring test must not start Ray")

    monkeypatch.setattr(ray, "init", no_ray)
    record: list[tuple[str, dict, list[str]]] = []

    def recorder(pipeline, original):
        signature = inspect.signature(original)

        def stage_of(arguments):  # the reward and judge stages call the same pipeline
            if pipeline == "reward" and Path(arguments["output"]).name == "judge":
                return "judge"
            return pipeline

        def fake(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)  # a stage calling it wrongly fails here
            bound.apply_defaults()
            stage = stage_of(bound.arguments)
            got = {k: v for k, v in bound.arguments.items() if k not in ("cfg", "fmt")}
            if stage == "rlhf":
                got["reward_model"] = bound.arguments["cfg"].rlhf.reward_model
            reads = {k: v for k, v in got.items() if k in EXPECTED_READS.get(stage, {})}
            paths = [p for p in flat(list(reads.values())) if p]
            if stage == "eval":
                paths += [str(got["root"] / p) for p in EVAL_READS]
            missing = [rel(p, tmp_path) for p in paths if not glob.glob(p)]
            record.append((stage, {k: rel(v, tmp_path) for k, v in got.items()}, missing))
            if stage in WRITES:
                out = Path(got["output"]) / WRITES[stage]
                out.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(DOCS, out) if out.suffix == ".parquet" else out.write_text("{}")
            if stage == "rlhf":
                (Path(got["output"]) / "heldout_prompts.jsonl").write_text('{"prompt": "q"}\n')
            if stage == "eval":
                (got["root"] / "eval" / "eval.json").write_text("{}")
            if stage == "report":
                (Path(got["run_dir"]) / "report.html").write_text("<html/>")
                return Path(got["run_dir"]) / "report.html"
            return {"stage": stage}

        return fake

    for stage, (module_name, function) in PIPELINES.items():
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, function, recorder(stage, getattr(module, function)))

    from pipelines.demo import derive

    real_items = derive.qa_items

    def qa_items(documents, *args, **kwargs):  # the real conversations stage, observed
        record.append(("conversations", {}, []))
        return real_items(documents, *args, **kwargs)

    monkeypatch.setattr(derive, "qa_items", qa_items)

    @contextmanager
    def fake_pydoc_server():
        yield SEED_URL

    monkeypatch.setattr("pipelines.demo.website.pydoc_server", fake_pydoc_server)
    return record


def flat(values: list) -> list:
    return [p for v in values for p in (v if isinstance(v, list) else [v])]


def ran(record) -> list[str]:
    return [stage for stage, _, _ in record]


def run(cfg, root, **kwargs):
    return run_lifecycle(cfg, root, STAGES, log=lambda _: None, **kwargs)


def test_each_stage_reads_what_its_upstream_wrote(calls, tmp_path):
    cfg = load_config()
    run(cfg, tmp_path)
    assert ran(calls) == NAMES  # each once, in order
    got = {stage: args for stage, args, _ in calls}
    assert got["crawl"]["seeds"] == [SEED_URL] and got["crawl"]["output"] == "crawl"
    for stage, reads in EXPECTED_READS.items():
        assert {k: got[stage][k] for k in reads} == reads, stage
        assert got[stage].get("output", stage) == stage  # and writes its own directory
    for stage, _, missing in calls:
        assert missing == [], f"{stage} read what no stage before it wrote: {missing}"
    for stage, reads in EXPECTED_READS.items():  # reruns see a change only from upstream
        dirs = {p.split("/")[0] for p in flat(list(reads.values())) if p}
        assert dirs <= closure(stage), f"{stage} reads {dirs}, upstream {closure(stage)}"
    assert {p.split("/")[0] for p in EVAL_READS} <= closure("eval")
    assert closure("report") == set(NAMES) - {"report"}, "the report reads every stage"
    derived = tmp_path / "conversations"
    assert [len(f.read_text().splitlines()) for f in sorted(derived.glob("*.jsonl"))] == [3, 1, 3]
    assert cfg.rlhf.reward_model is None  # the stage forced it into a copy only
    # the reward model and eval's judge train on the two sides of one split of the prompts
    reward, judge = got["reward"]["split"], got["judge"]["split"]
    assert (reward.held, judge.held) == (False, True)
    assert reward.fraction == judge.fraction == cfg.lifecycle.judge_fraction > 0
    assert reward.seed == judge.seed


def test_no_judge_fraction_trains_no_judge_and_the_reward_model_on_everything(calls, tmp_path):
    run(load_config(None, ["lifecycle.judge_fraction=0"]), tmp_path)
    got = {stage: args for stage, args, _ in calls}
    assert "judge" not in got and got["reward"]["split"] is None
    assert "eval" in got  # eval runs, with the judges the run has


def test_config_paths_replace_the_derived_ones(calls, tmp_path):
    files = {name: tmp_path / "given" / name for name in ("a.jsonl", "p.jsonl", "q.jsonl")}
    for path in files.values():
        path.parent.mkdir(exist_ok=True)
        path.write_text("{}\n")
    sets = [
        f"lifecycle.sft_data=[{files['a.jsonl']}]",
        f"lifecycle.preference_data=[{files['p.jsonl']}]",
        f"lifecycle.prompts={files['q.jsonl']}",
        "data.crawl.seeds=[http://example.test/]",
    ]
    run(load_config(None, sets + ["rlhf.reward_model=/models/rm"]), tmp_path / "run")
    got = {stage: args for stage, args, _ in calls}
    assert got["crawl"]["seeds"] == ["http://example.test/"]
    assert got["sft"]["data"] == ["given/a.jsonl"]
    assert got["reward"]["data"] == ["given/p.jsonl"]
    assert got["rlhf"]["prompts"] == "given/q.jsonl"
    assert got["eval"]["prompts_file"] == "run/rlhf/heldout_prompts.jsonl"  # never trained on
    assert got["rlhf"]["reward_model"] == "/models/rm"
    calls.clear()
    run(load_config(None, sets + ["rlhf.reward_fns=[tests.toy_rewards:flaky]"]), tmp_path / "r2")
    assert {s: a for s, a, _ in calls}["rlhf"]["reward_model"] is None


def test_second_run_skips_everything(calls, tmp_path):
    run(load_config(), tmp_path)
    calls.clear()
    summary = run(load_config(), tmp_path)
    assert calls == [] and set(summary["stages"].values()) == {"skipped (unchanged)"}


@pytest.mark.parametrize(
    ("override", "changed"),
    [
        ("pretrain.max_steps=7", {"pretrain"}),
        ("data.min_words=7", {"filter"}),
        ("tokenizer.seed=7", {"tokenizer"}),
        ("lifecycle.seed=7", {"conversations", "sft", "reward", "judge", "rlhf", "eval", "serve"}),
        ("serve.port=8123", {"serve"}),
    ],
)
def test_a_config_change_reruns_that_stage_and_downstream(calls, tmp_path, override, changed):
    run(load_config(), tmp_path)
    calls.clear()
    run(load_config(None, [override]), tmp_path)
    assert ran(calls) == downstream(changed)
    if override.startswith("pretrain"):  # the graph, spelled out once by hand
        assert ran(calls) == [
            "pretrain",
            "sft",
            "reward",
            "judge",
            "rlhf",
            "eval",
            "serve",
            "report",
        ]


def test_from_until_run_only_the_range(calls, tmp_path):
    run(load_config(), tmp_path, until="dedup")
    assert ran(calls) == ["crawl", "ingest", "filter", "dedup"]
    calls.clear()
    summary = run(load_config(), tmp_path, start="tokenizer", until="pretrain")
    assert ran(calls) == ["tokenizer", "tokenize", "pretrain"]
    assert summary["stages"]["dedup"] == summary["stages"]["sft"] == "not selected"
    calls.clear()
    run(load_config(), tmp_path, start="conversations")
    assert ran(calls) == NAMES[NAMES.index("conversations") :]


def test_from_a_stage_without_upstream_output_is_an_error(calls, tmp_path):
    run(load_config(), tmp_path, until="pretrain")
    with pytest.raises(ConfigError, match="needs conversations"):
        run(load_config(), tmp_path, start="sft")
    with pytest.raises(ConfigError, match="needs crawl"):
        run(load_config(), tmp_path / "fresh", start="ingest")


def test_cli_from_until_reach_the_lifecycle(calls, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["run", "--output", out, "--until", "ingest"]) == 0
    assert cli.main(["run", "--output", out, "--from", "filter", "--until", "dedup"]) == 0
    assert ran(calls) == ["crawl", "ingest", "filter", "dedup"]
    assert cli.main(["run", "--output", out, "--from", "pretrain"]) == 2
    assert "needs tokenize" in capsys.readouterr().err
