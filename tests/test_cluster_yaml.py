"""cluster.yaml passes Ray's own cluster-config validation and has the shape rlmeta needs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from rlmeta.distributed.placement import learner_placement
from rlmeta.distributed.ray_runtime import SYSTEM_CONFIG

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def load() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_validation() -> None:
    # What `ray up` does before launching: fill in the provider defaults, then validate.
    validate_config(prepare_config(load()))
    # The validation is strict enough to catch a mistyped key (so the pass above means something).
    mistyped = load()
    mistyped["available_node_types"]["cpu_worker"]["max_worker"] = 8
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(mistyped))


def test_head_has_the_gpu_for_the_learner_and_workers_autoscale_on_cpu() -> None:
    config = load()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert learner_placement("auto", head["resources"]) == ("cuda", 1.0)
    cpu_types = [t for name, t in types.items() if name != config["head_node_type"]]
    assert cpu_types and all("GPU" not in t["resources"] for t in cpu_types)
    assert all(t["max_workers"] > t["min_workers"] for t in cpu_types)


def test_setup_installs_torch_before_the_project_on_every_node() -> None:
    config = load()
    for key in ("head_setup_commands", "worker_setup_commands"):
        commands = config[key]
        torch_at = next(i for i, c in enumerate(commands) if "install" in c and "torch" in c)
        project_at = next(i for i, c in enumerate(commands) if "-e ~/rlmeta" in c)
        assert torch_at < project_at, key
    assert config["file_mounts"]["~/rlmeta"] == "."


def test_head_starts_ray_with_the_system_config_local_runs_use() -> None:
    (start,) = [c for c in load()["head_start_ray_commands"] if "ray start" in c]
    words = shlex.split(start.split(";", 1)[1])
    flags = [w for w in words if w.startswith("--system-config=")]
    assert len(flags) == 1, start
    assert json.loads(flags[0].split("=", 1)[1]) == SYSTEM_CONFIG
