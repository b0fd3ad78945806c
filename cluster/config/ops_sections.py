"""Config sections of operations: Ray runtime, planning, resources, jobs, serving, the run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cluster.config.section import Section


class RuntimeConfig(Section):
    """Where Ray runs. ``address`` None: ``RAY_ADDRESS`` if set, else a fresh local cluster."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local cluster (None: all)")
    num_gpus: int | None = Field(None, ge=0)
    object_store_mb: int = Field(512, ge=64, description="object store of a local cluster")
    temp_dir: str | None = None


class PlanConfig(Section):
    """``natal plan``: FLOPs, time, cost and energy of a training run (pipelines/training/plan.py)."""

    accelerator: Literal["h100", "h200", "a100", "cpu"] = Field(
        "h100",
        description="accelerator kind; its peak bf16 FLOP/s and TDP are in pipelines/training/plan.py",
    )
    count: int = Field(8, ge=1, description="accelerators in the run (for cpu: cores)")
    mfu: float = Field(0.4, gt=0, le=1, description="model FLOPs utilization (PaLM: 0.46)")
    price_per_hour: float | None = Field(
        None, ge=0, description="price of one accelerator-hour (None: no cost estimate)"
    )
    watts: float | None = Field(None, gt=0, description="power per accelerator (None: its TDP)")


class ResourcesConfig(Section):
    """What Ray Data stages ask per task, and how elastic training is (cluster/resources.py).

    Training, serving and RLHF sections say their own per-worker/replica/actor resources; KubeRay
    worker groups are sized to fit all of them (tests/test_k8s.py checks it).
    """

    data_cpus_per_task: float = Field(1.0, gt=0, description="CPUs per Ray Data map task")
    train_min_workers: int | None = Field(
        None,
        ge=1,
        description="elastic training: workers at least, the stage's `workers` at most "
        "(None: fixed at `workers`); the run resizes as nodes come and go",
    )


class JobsConfig(Section):
    """``natal submit`` / ``natal jobs``: stages as Ray jobs on a running cluster (cluster/jobs.py)."""

    address: str | None = Field(
        None, description="Ray dashboard URL, e.g. http://HEAD:8265 (None: RAY_ADDRESS)"
    )
    working_dir: str = Field(".", description="directory shipped to the cluster with the job")
    excludes: list[str] = Field(
        default_factory=lambda: [
            ".venv",
            ".git",
            "runs",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".ruff_cache",
        ],
        description="gitignore-style patterns left out of the shipped working dir",
    )
    max_file_mb: float = Field(
        50.0, gt=0, description="larger files are left out of the working dir (read them from s3)"
    )
    pip_extras: list[str] = Field(
        default_factory=list,
        description="natal extras (pyproject) pip-installed for the job, e.g. [cpu]; [] = none",
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="environment variables of the job"
    )


class ServeConfig(Section):
    """``natal serve``: an OpenAI-compatible Ray Serve app whose replicas run vLLM."""

    host: str = Field("127.0.0.1", description="address the HTTP proxy listens on")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the proxy")
    api_key: str | None = Field(None, description="required bearer token (None: open)")
    served_model_name: str | None = Field(
        None, description="model id clients send (None: the model directory's name)"
    )
    min_replicas: int = Field(1, ge=0, description="autoscaling floor")
    max_replicas: int = Field(1, ge=1, description="autoscaling ceiling")
    target_ongoing_requests: float = Field(
        32, gt=0, description="requests in flight per replica that autoscaling aims at"
    )
    upscale_delay_s: float = Field(
        30, ge=0, description="seconds the load must stay above target before a replica is added"
    )
    downscale_delay_s: float = Field(
        600, ge=0, description="seconds the load must stay below target before one is removed"
    )
    look_back_period_s: float = Field(
        30, gt=1, description="window over which the requests in flight are averaged to scale"
    )
    max_ongoing_requests: int = Field(
        256, ge=1, description="requests a replica takes at once (its engine batches them)"
    )
    max_model_len: int | None = Field(None, ge=16, description="context (None: the model's)")
    kv_cache_mb: int = Field(256, ge=16, description="KV cache per replica on CPU")
    dtype: str | None = Field(None, description="vLLM dtype (None: float32 on CPU, auto on GPU)")
    num_cpus: float = Field(1, ge=0, description="CPUs reserved per replica")
    num_gpus: float = Field(0, ge=0, description="GPUs per replica (1 on a GPU cluster)")


class RateConfig(Section):
    """``natal rate``: the human rating page (Ray Serve) and its SQLite store."""

    db_path: str = Field("runs/rate/ratings.sqlite", description="SQLite file (WAL mode)")
    responses_per_prompt: int = Field(
        4, ge=2, le=9, description="responses generated per prompt (keys 1..N rank them)"
    )
    max_new_tokens: int = Field(128, ge=1, description="length cap of generated responses")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of responses")
    host: str = Field("127.0.0.1", description="address the page is served on")
    port: int = Field(8100, ge=1, le=65535, description="HTTP port of the page")


class LifecycleConfig(Section):
    """``natal run``: the data of the post-training stages, and the final checks.

    Empty lists / None: the ``conversations`` stage derives SFT conversations, preferences
    (ranked by a rule-based judge standing in for human raters) and held-out prompts from the
    curated documents — what the demo does.
    """

    sft_data: list[str] = Field(default_factory=list, description="SFT files (any sft format)")
    preference_data: list[str] = Field(
        default_factory=list, description="preference files (any natal reward format)"
    )
    prompts: str | None = Field(None, description="RLHF and eval prompts (JSONL)")
    seed: int = Field(0, description="split of derived conversations into SFT / held-out")
    judge_fraction: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="share of the preference prompts kept from natal reward to train the "
        "independent judge of natal eval (stage judge; 0: no judge model)",
    )
    judge_fn: str | None = Field(
        None,
        description="a rule (module:function, as rlhf.reward_fns) that also judges natal eval's "
        "answers, e.g. against the prompt rows' reference answers",
    )
    eval_prompts: int = Field(64, ge=1, description="held-out prompts answered in natal eval")
    eval_max_new_tokens: int = Field(48, ge=1, description="answer length in natal eval")
    serve_check: str = Field(
        "What is the Python module json for?",
        description="the chat request sent to the served final model at the end of the run",
    )
