"""``natal pretrain`` on Ray Train: learning, resume, failures, FSDP2, export (pipelines/pretrain/llama.py).

Ray Train costs ~12-14 s to start per run, so runs are shared between assertions: one
straight 20-step run (1 worker) is the reference; a 2-worker DDP run that stops at step 10,
is rerun, and loses a worker at step 15 must reproduce its losses.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faults import train_worker_fails_once

from cluster.cli import main
from cluster.config import load_config
from cluster.config.errors import ConfigError, InputError
from pipelines.pretrain import llama

pytestmark = pytest.mark.ray

SETTINGS = {
    "pretrain.lr": 3e-3,
    "pretrain.min_lr": 3e-4,
    "pretrain.warmup_steps": 3,
    "pretrain.log_every": 1,
    "pretrain.eval_every": 10,
    "pretrain.eval_batches": 2,
    "pretrain.checkpoint_every": 5,
    "pretrain.micro_batch": 8,
    "pretrain.max_failures": 0,
}


def config(**changes):
    values = dict(SETTINGS)
    values.update({f"pretrain.{k}": v for k, v in changes.items()})
    return load_config(values=values)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(
    ray_cluster: None, pretrain_shards: Path, pretrain_tokenizer: Path, tmp_path_factory
) -> Path:
    """20 steps, 1 worker, through the CLI exactly as a user types it."""
    run_dir = tmp_path_factory.mktemp("pretrain") / "straight"
    sets = [arg for k, v in SETTINGS.items() for arg in ("--set", f"{k}={v}")]
    argv = ["pretrain", "--data", str(pretrain_shards), "--tokenizer", str(pretrain_tokenizer)]
    argv += ["--output", str(run_dir), "--preset", "tiny", "--max-steps", "20", "--workers", "1"]
    assert main(argv + sets) == 0
    return run_dir


def test_loss_falls_clearly_on_real_text(straight: Path) -> None:
    log = rows(straight)
    assert [r["step"] for r in log] == list(range(1, 21))
    first, last = log[0]["loss"], sum(r["loss"] for r in log[-3:]) / 3
    assert first > math.log(1024) - 0.5  # starts near uniform over the vocabulary
    assert last < first - 0.6
    evaluated = [r for r in log if "val_loss" in r]
    assert [r["step"] for r in evaluated] == [10, 20]
    assert evaluated[1]["val_loss"] < evaluated[0]["val_loss"] < first
    assert evaluated[1]["val_ppl"] < 1024 / 2  # held-out perplexity: under half of uniform
    assert evaluated[1]["val_ppl"] == pytest.approx(math.exp(evaluated[1]["val_loss"]), rel=1e-3)
    for key in ("lr", "grad_norm", "tokens_per_s", "mfu"):
        assert all(r[key] > 0 for r in log), key
    assert log[2]["lr"] == pytest.approx(3e-3)  # end of warmup
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["tokens"] == 20 * 8 * 128
    assert summary["sample"].startswith("The")
    assert (straight / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "preset: tiny" in (straight / "config.yaml").read_text()
    versus = json.loads((straight / "plan.json").read_text())  # measured beside natal plan
    params = llama.count_parameters(str(straight / "final"))
    assert versus["parameters"] == params > 0
    assert versus["flops_6NT"] == pytest.approx(6 * params * summary["tokens"])
    assert versus["measured_seconds"] == pytest.approx(summary["train_seconds"])
    assert versus["measured_kwh_estimate"] > 0 and versus["plan_seconds"] > 0


def test_stop_resume_and_worker_failure_reproduce_the_straight_run(
    straight: Path, pretrain_shards: Path, pretrain_tokenizer: Path, tmp_path: Path
) -> None:
    """2 DDP workers × 4 sequences see the same 8 sequences per step as 1 × 8.

    The faults come from tests/faults.py: rank 0 raises right after the checkpoint of a step.
    """
    run_dir = tmp_path / "resumed"
    args = (str(pretrain_shards), str(pretrain_tokenizer), str(run_dir))
    stop = train_worker_fails_once(at_step=10, marker=tmp_path / "failed-at-10")
    with stop, pytest.raises(Exception, match="injected failure at step 10"):  # the "stop"
        llama.run(config(max_steps=20, workers=2, micro_batch=4), *args)
    assert [r["step"] for r in rows(run_dir)] == list(range(1, 11))
    # the same command again resumes at step 10; a worker dies at 15 and the run goes on
    with train_worker_fails_once(at_step=15, marker=tmp_path / "failed-at-15"):
        stats = llama.run(config(max_steps=20, workers=2, micro_batch=4, max_failures=1), *args)
    assert stats["counts"]["steps"] == 20 and stats["workers"] == 2
    resumed, reference = rows(run_dir), rows(straight)
    assert [r["step"] for r in resumed] == list(range(1, 21))
    for mine, theirs in zip(resumed, reference, strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=2e-3), mine["step"]
    assert resumed[-1]["val_loss"] == pytest.approx(reference[-1]["val_loss"], abs=2e-3)
    assert (tmp_path / "failed-at-15").exists()  # the worker failure did happen


def test_fsdp2_two_workers_trains_checkpoints_and_exports(
    ray_cluster: None, pretrain_shards: Path, pretrain_tokenizer: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    cfg = config(
        max_steps=4,
        workers=2,
        strategy="fsdp",
        micro_batch=4,
        grad_accum=2,
        activation_checkpointing=True,
        checkpoint_every=2,
        eval_every=4,
    )
    stats = llama.run(cfg, str(pretrain_shards), str(pretrain_tokenizer), str(tmp_path))
    assert stats["workers"] == 2 and stats["counts"]["tokens"] == 4 * 2 * 2 * 4 * 128
    log = rows(tmp_path)
    assert [r["step"] for r in log] == [1, 2, 3, 4] and "val_loss" in log[-1]
    assert log[-1]["loss"] < log[0]["loss"]
    checkpoints = sorted((tmp_path / "checkpoints" / "pretrain").glob("checkpoint_2*"))
    assert checkpoints and (checkpoints[-1] / "optimizer.pt").exists()
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["position"] == {"samples": 4 * 2 * 2 * 4}
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert model.config.num_hidden_layers == 4 and not any(
        n.startswith("_fsdp") for n, _ in model.named_parameters()
    )


VLLM_CHECK = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from actors.engine import make_llm
from vllm import SamplingParams, TokensPrompt

model_dir, n = sys.argv[1], 24
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
prompts = ["The king said", "It is a truth", "Of all the", "In the year", "She was not",
           "What is the", "Good morning,", "There were"]
ids = [tok(p).input_ids for p in prompts]
hf = []
with torch.no_grad():
    for seq in ids:
        seq = list(seq)
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        hf.append(seq[len(seq) - n:])
llm = make_llm(model_dir, kv_cache_mb=64)
params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
outs = llm.generate([TokensPrompt(prompt_token_ids=s) for s in ids], params)
print("RESULT " + json.dumps({"hf": hf, "vllm": [list(o.outputs[0].token_ids) for o in outs],
                              "stop": model.generation_config.eos_token_id}))
"""


def test_export_loads_in_transformers_and_vllm_with_identical_greedy_tokens(straight: Path) -> None:
    final = straight / "final"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (final / name).exists(), name
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "auto"}
    proc = subprocess.run(
        [sys.executable, "-c", VLLM_CHECK, str(final)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert len(result["stop"]) == 2  # <|eos|> and <|end|> stop generation
    for hf, vllm in zip(result["hf"], result["vllm"], strict=True):
        assert vllm == hf[: len(vllm)]
        assert len(vllm) == 24 or vllm[-1] in result["stop"]


def test_bad_inputs_fail_before_training(
    ray_cluster: None, pretrain_shards: Path, pretrain_tokenizer: Path, tmp_path: Path, capsys
) -> None:
    data, tok = str(pretrain_shards), str(pretrain_tokenizer)
    other = tmp_path / "other-tokenizer"
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "another corpus entirely"}) + "\n")
    argv = ["tokenizer", "--input", str(tmp_path / "d.jsonl"), "--output", str(other)]
    assert main(argv + ["--vocab-size", "300"]) == 0
    with pytest.raises(InputError, match="vocabulary mismatch"):
        llama.run(config(max_steps=1), data, str(other), str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="above the model's maximum 64"):
        llama.run(config(max_steps=1, max_seq_len=64), data, tok, str(tmp_path / "r"))
    with pytest.raises(InputError, match="corpus too small"):
        llama.run(config(max_steps=1, micro_batch=10**6), data, tok, str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="more CPUs than the cluster has"):
        llama.run(config(max_steps=1, workers=64), data, tok, str(tmp_path / "r"))
    (tmp_path / "file").write_text("x")
    bad = str(tmp_path / "file" / "ckpt")
    with pytest.raises(ConfigError, match="not writable"):
        llama.run(config(max_steps=1, storage_path=bad), data, tok, str(tmp_path / "r"))
    assert main(["pretrain", "--data", str(tmp_path), "--tokenizer", tok, "--output", "x"]) == 2
    assert "not a token-shard directory" in capsys.readouterr().err


def test_checkpoints_on_s3_and_a_rerun_resumes_from_them(
    ray_cluster: None, s3_bucket: str, pretrain_shards: Path, pretrain_tokenizer: Path, tmp_path
) -> None:
    import s3fs

    run_dir = tmp_path / "s3run"
    storage = f"{s3_bucket}/checkpoints"
    args = (str(pretrain_shards), str(pretrain_tokenizer), str(run_dir))
    llama.run(config(max_steps=4, checkpoint_every=2, eval_every=0, storage_path=storage), *args)
    saved = s3fs.S3FileSystem().find(storage.removeprefix("s3://"))
    assert any(path.endswith("model.safetensors") for path in saved)  # HF weights, on S3
    assert any(path.endswith("optimizer.pt") for path in saved)
    llama.run(config(max_steps=6, checkpoint_every=2, eval_every=0, storage_path=storage), *args)
    assert [r["step"] for r in rows(run_dir)] == list(range(1, 7))  # resumed at 4, not redone
