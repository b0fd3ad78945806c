"""The subset of kustomize that k8s/ uses, in Python: for machines without a kustomize binary.

Supported: ``resources`` (files and directories with a kustomization), ``configMapGenerator``
(``files``, ``behavior: create|replace``) with ``generatorOptions.disableNameSuffixHash``, and
``patches`` holding JSON 6902 operations (add, replace, remove) with a ``target``. Anything
else raises, so a manifest change that this cannot render is noticed, not mis-rendered.
tests/test_k8s.py checks the output against ``kubectl kustomize`` where that exists.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "patches",
}


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kustomize build directory`` would print (order aside)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN_KEYS
    if unknown:
        raise NotImplementedError(f"{directory}: kustomization keys {sorted(unknown)}")
    if spec.get("configMapGenerator") and not spec.get("generatorOptions", {}).get(
        "disableNameSuffixHash"
    ):
        raise NotImplementedError("name suffix hashes are not rendered")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in spec.get("configMapGenerator", []):
        _generate_config_map(directory, generator, objects)
    for patch in spec.get("patches", []):
        ops = yaml.safe_load((directory / patch["path"]).read_text())
        if not isinstance(ops, list):
            raise NotImplementedError("only JSON 6902 patches (a list of operations)")
        for obj in objects:
            if _targeted(obj, patch["target"]):
                for op in ops:
                    _apply(obj, op)
    return objects


def _generate_config_map(
    directory: Path, generator: dict[str, Any], objects: list[dict[str, Any]]
) -> None:
    data = {}
    for item in generator.get("files", []):
        key, _, source = item.partition("=") if "=" in item else (Path(item).name, "", item)
        data[key] = (directory / source).read_text()
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": generator["name"]},
        "data": data,
    }
    same = [
        i
        for i, obj in enumerate(objects)
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == generator["name"]
    ]
    behavior = generator.get("behavior", "create")
    if behavior == "replace" and same:
        objects[same[0]] = config_map
    elif behavior == "create" and not same:
        objects.append(config_map)
    else:
        raise ValueError(f"configMapGenerator {generator['name']}: {behavior} with {len(same)}")


def _targeted(obj: dict[str, Any], target: dict[str, str]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    actual = {"group": group, "version": version, "kind": obj["kind"]}
    actual["name"] = obj["metadata"]["name"]
    return all(actual.get(key) == value for key, value in target.items())


def _apply(obj: dict[str, Any], op: dict[str, Any]) -> None:
    """One JSON 6902 operation (RFC 6901 pointers: ~1 is /, ~0 is ~)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    kind = op["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if kind == "remove":
            del parent[index]
        elif kind == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[index] = copy.deepcopy(op["value"])
        else:
            raise NotImplementedError(f"JSON patch op {kind}")
    elif kind == "remove":
        del parent[last]
    elif kind in ("add", "replace"):
        if kind == "replace" and last not in parent:
            raise KeyError(f"replace {op['path']}: no such field")
        parent[last] = copy.deepcopy(op["value"])
    else:
        raise NotImplementedError(f"JSON patch op {kind}")
