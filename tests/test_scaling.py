"""Scaling up and down on Ray's own autoscaler, and surviving a lost node mid-stage.

Each test owns its Ray head (a subprocess; never `ray stop`, never AutoscalingCluster, which
runs `ray stop --force`) and drives it from a child Python process, so the suite's session
cluster in this process is untouched. The drivers size their work with cluster.resources,
as natal's stages do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from ray_head import RayHead

pytestmark = pytest.mark.slow

# A stage's tasks, sized by resources.data_task_resources (1 CPU each), all submitted at once
# (Ray Data holds tasks back to what the cluster has now, and asks the autoscaler only after
# ~30 s: plain tasks show the autoscaler's behaviour directly). Records the most nodes alive
# while they run and, after, how long until the idle nodes are gone.
AUTOSCALE_DRIVER = """
import json, sys, threading, time
import ray
from cluster.config import load_config
from cluster.resources import data_task_resources

address, tasks, sleep_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
cfg = load_config(overrides=["resources.data_cpus_per_task=1"])
ray.init(address=address, log_to_driver=False)

def alive():
    return sum(1 for node in ray.nodes() if node["Alive"])

@ray.remote(**data_task_resources(cfg))
def shard(i):
    time.sleep(sleep_s)
    return i, ray.get_runtime_context().get_node_id()

start = time.monotonic()
refs = [shard.remote(i) for i in range(tasks)]
peak, timeline = alive(), []
while len(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) < len(refs):
    peak = max(peak, alive())
    timeline.append((round(time.monotonic() - start, 1), alive()))
    time.sleep(0.5)
done = ray.get(refs)
result = {"ids": sorted(i for i, _ in done), "nodes_used": len({n for _, n in done})}
result["peak_nodes"], result["work_s"] = peak, round(time.monotonic() - start, 1)
ended = time.monotonic()
while alive() > 1 and time.monotonic() - ended < 90:
    time.sleep(1)
result["nodes_after_idle"], result["scale_down_s"] = alive(), round(time.monotonic() - ended, 1)
result["timeline"] = timeline[::4]
print("RESULT " + json.dumps(result))
"""


# A natal stage as the demand: `natal pretrain` with 2 one-CPU workers on a 1-CPU head. On a
# cluster natal joins (RAY_ADDRESS), the stage does not refuse work the cluster cannot place
# yet: Ray Train's pending placement group makes the autoscaler add a node.
PRETRAIN_DRIVER = """
import json, os, sys, threading, time
address, shards, tokenizer, out = sys.argv[1:5]
os.environ["RAY_ADDRESS"] = address
import ray
from cluster.config import load_config
from pipelines.pretrain import llama

values = {"pretrain.workers": 2, "pretrain.max_steps": 3, "pretrain.micro_batch": 2,
          "pretrain.log_every": 1, "pretrain.eval_every": 0, "pretrain.checkpoint_every": 0,
          "pretrain.max_failures": 0, "pretrain.warmup_steps": 1}
cfg = load_config(values=values)
ray.init(address=address, log_to_driver=False)

def alive():
    return sum(1 for node in ray.nodes() if node["Alive"])

result = {"start_nodes": alive(), "peak_nodes": alive()}
done = threading.Event()

def watch():
    while not done.is_set():
        result["peak_nodes"] = max(result["peak_nodes"], alive())
        time.sleep(0.5)

threading.Thread(target=watch, daemon=True).start()
stats = llama.run(cfg, data=shards, tokenizer=tokenizer, output=out)
done.set()
result["steps"] = stats["counts"]["steps"]
ended = time.monotonic()
while alive() > 1 and time.monotonic() - ended < 90:
    time.sleep(1)
result["nodes_after_idle"] = alive()
print("RESULT " + json.dumps(result))
"""


def run_driver(script: str, *args: str, timeout: float = 300) -> dict:
    """Run a driver script in a child Python (``ray.init`` there, not here); its RESULT line.

    The child gets its own process group, killed whole on a timeout: a Cluster it started
    does not outlive it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"driver ran over {timeout} s: {stdout[-2000:]}{stderr[-2000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, stdout[-3000:] + stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def fake_cluster_config(path: Path, head: RayHead, max_workers: int) -> Path:
    """Ray's fake multi-node provider: the autoscaler starts 'nodes' as local raylets."""
    config = {
        "cluster_name": "natal-fake",
        "max_workers": max_workers,
        "idle_timeout_minutes": 0.1,
        "upscaling_speed": 10.0,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": head.address,
            "disable_launch_config_check": True,
            "disable_node_updaters": True,
            "use_node_id_as_ip": True,
            "launch_multiple": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "ray.worker.cpu": {
                "resources": {"CPU": 1},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_autoscaler_adds_nodes_for_pending_work_and_removes_idle_ones(tmp_path: Path) -> None:
    head = RayHead(num_cpus=1, dashboard=False)
    config = fake_cluster_config(tmp_path / "autoscale.yaml", head, max_workers=2)
    head.cmd.append(f"--autoscaling-config={config}")
    head.env.update(AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_FAKE_CLUSTER="1")
    head.start()
    try:
        started = time.monotonic()
        result = run_driver(AUTOSCALE_DRIVER, head.address, "6", "3")
        print(f"autoscaler: {result} ({time.monotonic() - started:.0f} s)")
    finally:
        head.stop()
    assert result["ids"] == list(range(6))  # every task ran once, nothing lost
    # Scaled up (the 2 nodes come one after the other on a busy machine). At most max_workers
    # run at once, but Ray may still list an idle node being removed while its replacement
    # joins: 1 head + 2 workers + 1 leaving.
    assert 2 <= result["peak_nodes"] <= 4, result["timeline"]
    assert result["nodes_used"] >= 2  # the new nodes did the work, not only the head
    assert result["nodes_after_idle"] == 1  # idle workers were removed again


def test_autoscaler_adds_a_node_for_a_natal_pretrain_stage(
    tmp_path: Path, pretrain_shards: Path, pretrain_tokenizer: Path
) -> None:
    head = RayHead(num_cpus=1, dashboard=False)
    config = fake_cluster_config(tmp_path / "autoscale.yaml", head, max_workers=2)
    head.cmd.append(f"--autoscaling-config={config}")
    head.env.update(AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_FAKE_CLUSTER="1")
    head.start()
    try:
        args = (head.address, str(pretrain_shards), str(pretrain_tokenizer), str(tmp_path / "run"))
        result = run_driver(PRETRAIN_DRIVER, *args)
    finally:
        head.stop()
    assert result["start_nodes"] == 1  # the head alone could not place 2 training workers
    assert result["peak_nodes"] >= 2  # the stage's pending workers brought a node up
    assert result["steps"] == 3  # and the stage ran to the end on it
    assert result["nodes_after_idle"] == 1  # the idle node went away again
    assert (tmp_path / "run" / "final" / "config.json").exists()


# ray.cluster_utils.Cluster (several raylets on this machine; its shutdown kills only its own
# processes, no `ray stop`), built inside the child driver: a head and worker nodes A and B,
# one CPU each, running natal's own stages. The data phase (ingest → filter → dedup, Ray Data)
# loses node A while the filter's tasks run (no graceful shutdown): Ray retries the lost tasks;
# every document must come out once, in exactly one of kept / removed, as the pure filter chain
# decides it. Then `natal pretrain` (2 workers, elastic down to 1) loses B after a checkpoint:
# Ray Train restarts the group with the one worker that still fits and the loop resumes from
# the checkpoint (the rows logged before the loss are kept, not redone).
NODE_LOSS_DRIVER = """
import json, os, sys, threading, time
temp_dir, corpus, shards, tokenizer, out = sys.argv[1:6]
os.environ["RAY_TMPDIR"] = temp_dir  # ray.cluster_utils writes its address file in RAY_TMPDIR/ray
os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
# Ray Train restarts the group at once, while the GCS still lists the killed node's CPU: its
# attempt at 2 workers waits out this timeout (default 60 s) before it settles for 1.
os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = "20"
import pyarrow.dataset as pads
import ray
from ray.cluster_utils import Cluster
from cluster.config import load_config
from pipelines.data import ingest, quality_filter as filter_stage
from pipelines.pretrain import llama
from pipelines.data.dedup import deduplicate as dedup_stage
from pipelines.data.filters.chain import FilterChain, split_annotated

def free_port():  # outside Ray's worker port range
    import socket
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not 10002 <= port <= 19999:
            return port

def ports():  # ports that default to fixed numbers another cluster on this machine may hold
    names = ("dashboard_agent_listen_port", "metrics_export_port", "runtime_env_agent_port")
    return {name: free_port() for name in names}

cfg = load_config(values={
    "resources.data_cpus_per_task": 1, "resources.train_min_workers": 1,
    "pretrain.workers": 2, "pretrain.cpus_per_worker": 1, "pretrain.max_steps": 8,
    "pretrain.micro_batch": 2, "pretrain.log_every": 1, "pretrain.eval_every": 0,
    "pretrain.checkpoint_every": 2, "pretrain.max_failures": 2, "pretrain.warmup_steps": 1,
})
cluster = Cluster(
    initialize_head=True,
    connect=True,
    head_node_args={"num_cpus": 1, "gcs_server_port": free_port(), "include_dashboard": False,
                    "temp_dir": temp_dir, "ray_client_server_port": free_port(), **ports(),
                    "_system_config": {"health_check_period_ms": 200,
                                       "health_check_failure_threshold": 3}},
)
node_a, node_b = cluster.add_node(num_cpus=1, **ports()), cluster.add_node(num_cpus=1, **ports())
cluster.wait_for_nodes()
result = {"seconds": {}}
clock = time.monotonic()

def lap(name):
    global clock
    result["seconds"][name], clock = round(time.monotonic() - clock, 1), time.monotonic()

def alive():
    return sum(1 for node in ray.nodes() if node["Alive"])

def ids(path):
    return pads.dataset(path, format="parquet").to_table(columns=["id"]).column("id").to_pylist()

def kill_when(node, ready, name):
    # remove ``node`` once ``ready()`` holds; record whether the stage was still running
    def watch():
        while not ready():
            time.sleep(0.1)
        result[name + "_killed_while_running"] = not stage_done.is_set()
        cluster.remove_node(node, allow_graceful=False)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread

lap("cluster")
nodes_before = alive()
ingest_stats = ingest.run(cfg, [corpus], out + "/ingest")
stage_done = threading.Event()
busy = lambda: ray.available_resources().get("CPU", 0) < 3  # the filter's tasks hold CPUs
watcher = kill_when(node_a, busy, "filter")
filter_stats = filter_stage.run(cfg, out + "/ingest", out + "/filter")
stage_done.set()
watcher.join()
deadline = time.monotonic() + 90  # the GCS marks a killed node dead after missed health checks
while alive() == nodes_before and time.monotonic() < deadline:
    time.sleep(0.5)
result["nodes"] = [nodes_before, alive()]
dedup_stats = dedup_stage.run(cfg, [out + "/filter/documents"], out + "/dedup")
lap("data")

ingested = ids(out + "/ingest/documents")
kept, removed = ids(out + "/filter/documents"), ids(out + "/filter/removed")
table = pads.dataset(out + "/ingest/documents", format="parquet").to_table()
expected_kept, _ = split_annotated(FilterChain(cfg.data.filter, cfg.data.min_words).annotate(table))
deduped, duplicates = ids(out + "/dedup/documents"), ids(out + "/dedup/removed")
result["data"] = {
    "ingested": len(ingested), "ingested_unique": len(set(ingested)),
    "ingest_count": ingest_stats["counts"]["documents"],
    "kept": len(kept), "removed": len(removed), "kept_unique": len(set(kept)),
    "filter_partition_ok": set(kept) | set(removed) == set(ingested)
    and not set(kept) & set(removed) and len(kept) + len(removed) == len(ingested),
    "filter_as_pure_chain": sorted(kept) == sorted(expected_kept.column("id").to_pylist()),
    "filter_counts": [filter_stats["counts"]["kept"], filter_stats["counts"]["removed"]],
    "dedup_partition_ok": set(deduped) | set(duplicates) == set(kept)
    and len(deduped) + len(duplicates) == len(kept),
    "duplicates": len(duplicates),
}

rows_file = out + "/pretrain/metrics.jsonl"
def checkpointed():  # step 4's checkpoint is written and training has moved on
    try:
        return any(json.loads(line)["step"] >= 5 for line in open(rows_file))
    except (OSError, ValueError):
        return False
stage_done = threading.Event()
killed_at = []
watcher = kill_when(node_b, lambda: checkpointed() and not killed_at.append(time.time()), "train")
stats = llama.run(cfg, data=shards, tokenizer=tokenizer, output=out + "/pretrain")
stage_done.set()
watcher.join()
rows = [json.loads(line) for line in open(rows_file)]
result["train"] = {
    "steps": [r["step"] for r in rows], "final_step": stats["counts"]["steps"],
    "workers": [r["workers"] for r in rows],
    "logged_before_loss": [r["step"] for r in rows if r["time"] < killed_at[0]],
}
lap("train")
ray.shutdown()
cluster.shutdown()
print("RESULT " + json.dumps(result))
"""


def test_natal_stages_survive_a_lost_node(
    tmp_path: Path, pretrain_corpus: Path, pretrain_shards: Path, pretrain_tokenizer: Path
) -> None:
    temp_dir = tempfile.mkdtemp(prefix="nc")  # in the session dir (conftest): short socket paths
    corpus = tmp_path / "corpus"  # the real-text corpus in 12 files, 20 exact copies in a 13th
    corpus.mkdir()
    lines = [line for f in sorted(pretrain_corpus.glob("*.jsonl")) for line in f.open()]
    for part in range(12):
        (corpus / f"part-{part:02d}.jsonl").write_text("".join(lines[part::12]))
    copies = [json.loads(line) for line in lines[:20]]
    (corpus / "copies.jsonl").write_text(
        "".join(json.dumps({**doc, "id": doc["id"] + "-copy"}) + "\n" for doc in copies)
    )
    try:
        started = time.monotonic()
        args = (temp_dir, str(corpus), str(pretrain_shards), str(pretrain_tokenizer))
        result = run_driver(NODE_LOSS_DRIVER, *args, str(tmp_path / "run"), timeout=400)
        print(f"node loss: {result} ({time.monotonic() - started:.0f} s)")
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    data, train = result["data"], result["train"]
    assert result["filter_killed_while_running"] and result["nodes"] == [3, 2]  # A went away
    # every document exactly once: all ingested, each kept or removed as the rules decide
    assert data["ingested"] == data["ingested_unique"] == data["ingest_count"] == len(lines) + 20
    assert data["filter_partition_ok"] and data["filter_as_pure_chain"]
    assert data["filter_counts"] == [data["kept"], data["removed"]]
    assert data["dedup_partition_ok"] and data["duplicates"] >= 1  # the copies that were kept
    assert result["train_killed_while_running"]
    assert train["steps"] == list(range(1, 9)) and train["final_step"] == 8
    # resumed from a checkpoint (4, or 2 if 4 was not committed), not from scratch, on 1 worker
    assert train["logged_before_loss"][:2] == [1, 2]
    assert train["workers"][0] == 2 and train["workers"][-1] == 1
