"""k8s/: every manifest, and every overlay as rendered, against the KubeRay v1.7.0 CRD schemas;
entrypoints and import paths resolve to real natal code; worker groups hold what stages ask.
"""

from __future__ import annotations

import functools
import importlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import ROOT
from kustomize_lite import render

from cluster import resources
from cluster.cli import build_parser
from cluster.commands import COMMANDS
from cluster.config import NatalConfig, ServeConfig, build_config, parse_override, set_path

K8S = ROOT / "k8s"
TARGETS = [K8S / "base", *sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))]
IDS = [p.relative_to(K8S).as_posix() for p in TARGETS]
LONG_STAGES = ("curate", "pretrain", "sft", "rlhf")
CONFIG_MOUNT = "/etc/natal/"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- rendering and schemas ------------------------------------------------------------------


@functools.cache
def kustomize_binary() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@functools.cache
def rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    """What `kustomize build` prints; the Python pass where there is no kustomize binary."""
    binary = kustomize_binary()
    if binary is None:
        return tuple(render(directory))
    out = subprocess.run([*binary, str(directory)], capture_output=True, text=True, check=True)
    return tuple(doc for doc in yaml.load_all(out.stdout, Loader=Loader) if doc)


def strict(schema: Any) -> Any:
    """Unknown fields are errors (as with `kubectl apply --validate=strict`), except where
    the schema preserves them or says what extra keys may hold."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def validators(shared_data: Path) -> dict[str, jsonschema.Validator]:
    """kind → validator of the ray.io/v1 openAPIV3Schema of the KubeRay v1.7.0 CRD."""
    found = {}
    for path in sorted((shared_data / "kuberay-crds" / "crds").glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=Loader)
        v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = strict(v1["schema"]["openAPIV3Schema"])
        found[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(schema)
    assert {"RayCluster", "RayJob", "RayService"} <= set(found)
    return found


def check(obj: dict[str, Any], validators: dict[str, jsonschema.Validator]) -> list[str]:
    """Schema errors of one object, as readable lines (empty: valid)."""
    if obj["apiVersion"] != "ray.io/v1":
        return []
    errors = validators[obj["kind"]].iter_errors(obj)
    return [f"{obj['metadata']['name']}: {'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def ray_objects(objs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["apiVersion"] == "ray.io/v1" and o["kind"] == kind]


def cluster_specs(objs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    """Every Ray cluster spec in the output: RayCluster, RayJob's and RayService's."""
    specs = [(o["metadata"]["name"], o["spec"]) for o in ray_objects(objs, "RayCluster")]
    specs += [
        (o["metadata"]["name"], o["spec"]["rayClusterSpec"]) for o in ray_objects(objs, "RayJob")
    ]
    specs += [
        (o["metadata"]["name"], o["spec"]["rayClusterConfig"])
        for o in ray_objects(objs, "RayService")
    ]
    return specs


# --- schema validation ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((K8S / "base").glob("ray*.yaml")), ids=lambda p: p.name)
def test_base_manifest_files_validate(path: Path, validators) -> None:
    objs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert objs and all(o["apiVersion"] == "ray.io/v1" for o in objs)
    assert [e for o in objs for e in check(o, validators)] == []


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_rendered_output_validates(target: Path, validators) -> None:
    objs = rendered(target)
    kinds = {o["kind"] for o in objs}
    assert {"RayCluster", "RayJob", "RayService", "ConfigMap"} <= kinds
    assert [e for o in objs for e in check(o, validators)] == []


def test_the_validator_catches_mistakes(validators) -> None:
    cluster = ray_objects(rendered(K8S / "base"), "RayCluster")[0]
    typo = yaml.safe_load(yaml.safe_dump(cluster))
    typo["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    wrong_type = yaml.safe_load(yaml.safe_dump(cluster))
    wrong_type["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "three"
    assert any("maxReplica" in e for e in check(typo, validators))
    assert any("maxReplicas" in e for e in check(wrong_type, validators))


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_python_render_matches_kustomize(target: Path) -> None:
    if kustomize_binary() is None:
        pytest.skip("no kustomize/kubectl binary: the Python pass is the only renderer here")

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    assert sorted(render(target), key=key) == sorted(rendered(target), key=key)


# --- KubeRay features the issue asks for ----------------------------------------------------


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_autoscaling_and_job_lifecycle(target: Path) -> None:
    objs = rendered(target)
    for name, spec in cluster_specs(objs):
        assert spec["enableInTreeAutoscaling"] is True, name
        assert spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0, name
        assert spec["rayVersion"] == "2.60.0", name
        for group in spec["workerGroupSpecs"]:
            assert 0 <= group["minReplicas"] <= group["maxReplicas"], (name, group["groupName"])
    for job in ray_objects(objs, "RayJob"):
        spec = job["spec"]
        assert spec["submissionMode"] == "K8sJobMode"
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    groups = {
        g["groupName"] for g in ray_objects(objs, "RayCluster")[0]["spec"]["workerGroupSpecs"]
    }
    assert "cpu" in groups and (target.name == "cpu-small" or "gpu" in groups)


def test_every_long_stage_that_exists_has_a_rayjob() -> None:
    registered = {c.name for c in COMMANDS}
    jobs = {
        shlex.split(j["spec"]["entrypoint"])[1]
        for j in ray_objects(rendered(K8S / "base"), "RayJob")
    }
    assert {s for s in LONG_STAGES if s in registered} <= jobs
    assert jobs, "no RayJob at all"


# --- entrypoints and import paths resolve to natal code -------------------------------------


def mounted_config(objs: tuple[dict[str, Any], ...], path: str) -> str:
    """The text a pod sees at ``/etc/natal/FILE``: the natal-config ConfigMap's key."""
    assert path.startswith(CONFIG_MOUNT), f"config {path} is not on the natal-config mount"
    maps = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "natal-config"]
    return maps[0]["data"][path.removeprefix(CONFIG_MOUNT)]


def job_config(objs: tuple[dict[str, Any], ...], argv: list[str]) -> NatalConfig:
    """The config a RayJob's stage runs with: its --config (from the ConfigMap) and --set."""
    args = build_parser().parse_args(argv[1:])  # SystemExit on a flag natal does not take
    tree = yaml.safe_load(mounted_config(objs, args.config)) if args.config else {}
    for text in args.overrides:
        set_path(tree, *parse_override(text))
    return build_config(tree, origin=f"{argv[1]} job config")


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_job_entrypoints_are_natal_stages(target: Path) -> None:
    objs = rendered(target)
    stages = {c.name for c in COMMANDS}
    for job in ray_objects(objs, "RayJob"):
        argv = shlex.split(job["spec"]["entrypoint"])
        assert argv[0] == "natal" and argv[1] in stages, f"{job['metadata']['name']}: {argv[:2]}"
        job_config(objs, argv)  # parses with natal's own parser, config validates


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_serve_import_paths_resolve(target: Path) -> None:
    for service in ray_objects(rendered(target), "RayService"):
        serve = yaml.safe_load(service["spec"]["serveConfigV2"])
        for app in serve["applications"]:
            module, _, attr = app["import_path"].partition(":")
            builder = getattr(importlib.import_module(module), attr)
            assert callable(builder)
            args = {k: v for k, v in app.get("args", {}).items() if k != "model"}
            ServeConfig.model_validate(args)  # the builder's own schema for its args


# --- resources: worker groups hold what the stages ask Ray for ------------------------------


def quantity(value: Any) -> float:
    """A Kubernetes CPU/GPU quantity: 8, "8", "500m"."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def node_resources(group: dict[str, Any]) -> dict[str, float]:
    """What Ray sees on a pod of this group: its num-cpus/num-gpus, checked against the pod."""
    container = group["template"]["spec"]["containers"][0]
    requests = container["resources"]["requests"]
    limits = container["resources"].get("limits", {})
    params = group.get("rayStartParams", {})
    cpus = quantity(params.get("num-cpus", requests["cpu"]))
    gpus = quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))
    assert cpus == quantity(requests["cpu"]), f"{group.get('groupName')}: num-cpus ≠ requests"
    assert gpus == quantity(limits.get("nvidia.com/gpu", 0)), f"{group.get('groupName')}: GPUs"
    return {"CPU": cpus, "GPU": gpus}


def assert_fits(name: str, spec: dict[str, Any], demands: list[resources.Demand]) -> None:
    groups = [(g["maxReplicas"], node_resources(g)) for g in spec["workerGroupSpecs"]]
    for demand in demands:
        room = sum(n * resources.units_per_node(demand.resources, node) for n, node in groups)
        assert room >= demand.count, (
            f"{name}: {demand.count} × {demand.what} {demand.resources} do not fit the worker "
            f"groups {groups} (room for {room})"
        )


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_worker_groups_hold_what_stages_ask(target: Path) -> None:
    objs = rendered(target)
    checked = 0
    for name, spec in cluster_specs(objs):
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["num-cpus"] == "0", f"{name}: work would land on the head"
    for job in ray_objects(objs, "RayJob"):
        argv = shlex.split(job["spec"]["entrypoint"])
        demands = resources.stage_demands(job_config(objs, argv), argv[1])
        assert_fits(job["metadata"]["name"], job["spec"]["rayClusterSpec"], demands)
        checked += len(demands)
    for service in ray_objects(objs, "RayService"):
        for app in yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]:
            args = {k: v for k, v in app.get("args", {}).items() if k != "model"}
            cfg = NatalConfig(serve=ServeConfig.model_validate(args))
            demands = resources.stage_demands(cfg, "serve")
            assert_fits(service["metadata"]["name"], service["spec"]["rayClusterConfig"], demands)
            checked += len(demands)
    # The long-lived RayCluster (for `natal submit`) holds everything the jobs ask for.
    for job in ray_objects(objs, "RayJob"):
        argv = shlex.split(job["spec"]["entrypoint"])
        cluster = ray_objects(objs, "RayCluster")[0]
        assert_fits(
            "RayCluster", cluster["spec"], resources.stage_demands(job_config(objs, argv), argv[1])
        )
    assert checked > 0


def test_a_too_big_stage_is_caught() -> None:
    objs = rendered(K8S / "base")
    job = next(
        j for j in ray_objects(objs, "RayJob") if "natal.dev/stage" in j["metadata"]["labels"]
    )
    spec = job["spec"]["rayClusterSpec"]
    huge = [resources.Demand("train worker", {"CPU": 1000.0}, 1)]
    with pytest.raises(AssertionError, match="do not fit"):
        assert_fits("x", spec, huge)
    many = [resources.Demand("data task", {"CPU": 1.0}, 10_000)]
    with pytest.raises(AssertionError, match="do not fit"):
        assert_fits("x", spec, many)


# --- the image --------------------------------------------------------------------------------


def test_dockerfile_builds_natal_on_the_ray_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    assert defaults["RAY_IMAGE"] == "rayproject/ray:2.60.0-py311"
    assert re.search(r"^FROM \$\{RAY_IMAGE\}", text, re.M)
    assert "torch==2.13.0" in text
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert defaults["EXTRA"] in extras and "gpu" in extras
    images = {
        c["image"]
        for _, spec in cluster_specs(rendered(K8S / "base"))
        for c in spec["headGroupSpec"]["template"]["spec"]["containers"]
    }
    assert images == {"ghcr.io/natal-project/natal:0.1.0-cpu"}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
