"""Build the three images as compose.yaml defines them, with BuildKit, and read what the build did.

The build of each image (context, Dockerfile, tag, UID/GID arguments) is taken from `docker compose config`, so the
test builds what `docker compose build` would. Only the base image argument differs (no registry here, see
base_images.py), plus the optional pip secrets (pip_sources.py). The Compose binary here falls back to Docker's
legacy builder without the buildx plugin, which cannot run `RUN --mount`, so the build itself is `docker build`.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.docker.engine import DOCKER, DockerEngine

ENVS = ("extract", "train", "evaluate")
STEP = re.compile(r"^#(\d+) \[(?:[\w-]+ )?(\d+)/(\d+)\] (.+)$")  # "#9 [stage-0 5/8] RUN ..."


@dataclass
class ComposeBuild:
    env: str
    image: str
    dockerfile: Path
    context: Path
    args: dict[str, str]

    def base_arg(self) -> tuple[str, str]:
        """(ARG name, default) of the variable the Dockerfile's FROM names, e.g. ("CUDA_IMAGE", "nvidia/cuda:...")."""
        text = self.dockerfile.read_text()
        name = re.search(r"^FROM \$\{(\w+)\}", text, flags=re.M).group(1)
        default = re.search(rf"^ARG {name}=(\S+)", text, flags=re.M).group(1)
        return name, default


@dataclass
class BuildResult:
    seconds: float
    steps: dict[int, str] = field(default_factory=dict)  # Dockerfile step number -> instruction as BuildKit shows it
    cached: set[int] = field(default_factory=set)  # steps BuildKit took from its cache
    log: str = ""

    @property
    def executed(self) -> list[str]:
        """Instructions that ran (FROM only resolves the base image, it never counts)."""
        return [cmd for n, cmd in sorted(self.steps.items()) if not cmd.startswith("FROM ") and n not in self.cached]


def compose_builds(compose: list[str], env: dict[str, str], root: Path) -> dict[str, ComposeBuild]:
    """The build section of the service named after each environment, as Compose resolves it."""
    proc = subprocess.run([*compose, "-f", str(root / "compose.yaml"), "config", "--format", "json"], env=env,
                          cwd=root, capture_output=True, text=True, check=True, timeout=60)
    services = json.loads(proc.stdout)["services"]
    out = {}
    for name in ENVS:
        svc = services[name]
        context = Path(svc["build"]["context"])
        out[name] = ComposeBuild(name, svc["image"], context / svc["build"]["dockerfile"], context,
                                 {k: str(v) for k, v in svc["build"].get("args", {}).items()})
    return out


def parse_progress(log: str) -> tuple[dict[int, str], set[int]]:
    """BuildKit's plain progress -> ({step: instruction}, {cached steps})."""
    vertex_step, steps, cached = {}, {}, set()
    for line in log.splitlines():
        m = STEP.match(line)
        if m:
            vertex_step[m.group(1)] = int(m.group(2))
            steps[int(m.group(2))] = m.group(4)
        m = re.match(r"^#(\d+) CACHED$", line)
        if m and m.group(1) in vertex_step:
            cached.add(vertex_step[m.group(1)])
    return steps, cached


def build(engine: DockerEngine, spec: ComposeBuild, extra_args: dict[str, str], secrets: dict[str, Path],
          log_path: Path, timeout_s: float = 3600) -> BuildResult:
    """`docker build` of one image; the full BuildKit log goes to `log_path`."""
    argv = [DOCKER, "build", "--network", "host", "--progress", "plain", "-f", str(spec.dockerfile), "-t", spec.image]
    for key, value in {**spec.args, **extra_args}.items():
        argv += ["--build-arg", f"{key}={value}"]
    for name, src in secrets.items():
        argv += ["--secret", f"id={name},src={src}"]
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.run([*argv, str(spec.context)], env=engine.env, stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout_s, check=False)
    seconds = time.monotonic() - start
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"building {spec.image} failed ({proc.returncode}); log {log_path}:\n{text[-6000:]}")
    steps, cached = parse_progress(text)
    return BuildResult(seconds, steps, cached, text)


def composition(engine: DockerEngine, image: str, top: int = 6) -> dict:
    """Where an image's bytes are: base vs package layer vs the rest, and its largest installed distributions."""
    layers = [json.loads(line) for line in engine.docker("history", "--no-trunc", "--human=false", "--format",
                                                        "{{json .}}", image).stdout.splitlines()]
    sizes = [(int(layer["Size"]), layer["CreatedBy"]) for layer in reversed(layers)]  # oldest first
    pip_layer = max((s for s in sizes if "pip install" in s[1]), default=(0, ""))[0]
    base = sizes[0][0]
    du = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                       "du -sk /opt/venv/lib/python3.11/site-packages/* | sort -n | tail -n " + str(top)).stdout
    largest = {Path(path).name: int(kb) * 1024 for kb, path in (line.split(None, 1) for line in du.splitlines())}
    return {"base_layer": base, "pip_layer": pip_layer, "other_layers": sum(s for s, _ in sizes) - base - pip_layer,
            "largest_in_site_packages": dict(reversed(largest.items()))}
