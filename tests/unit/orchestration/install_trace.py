"""Record what an environment's install steps really do, without installing anything.

Both sides are *executed* with recording stand-ins for pip/python and for docker/install_nltk_data.sh:
- docker/setup_venv.sh <env> runs as it is, in a copy of docker/ (its venv python records every `-m pip` call);
- a Dockerfile is parsed with BuildKit's own parser (the `dockerfile` package), its COPY instructions are replayed into
  a sandbox and the RUN instructions that install packages run under bash with the same sandbox paths.
Each trace is a list of normalised calls, e.g. [("install", "torch==2.9.1", ...), ("install", "-r", "extract.txt")],
so a test can require the image and the local venv to install the same files in the same order.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

try:
    import dockerfile  # BuildKit's own Dockerfile parser (Go), from PyPI
except ImportError:
    pytest.fail("the `dockerfile` package is missing: it comes from docker/requirements/evaluate.local.txt "
                "(dockerfile==3.4.0; make setup-evaluate)", pytrace=False)

ROOT = Path(__file__).resolve().parents[3]
NOISE = {"--quiet", "--no-input", "-q"}  # output switches, not what gets installed


def _recorder(path: Path, log: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/bash\necho "{name} $*" >> "{log}"\n')
    path.chmod(0o755)


def normalise(line: str) -> tuple[str, ...] | None:
    """One recorded call -> ("install", args...) / ("nltk-data",); requirement files by file name, options kept."""
    words = line.split()
    if words[0] == "nltk-data":
        return ("nltk-data",)
    if words[:3] == ["python", "-m", "pip"]:
        words = ["pip", *words[3:]]
    if words[:2] != ["pip", "install"]:
        return None
    out, it = ["install"], iter(words[2:])
    for word in it:
        if word in NOISE:
            continue
        if word in ("--extra-index-url", "--index-url"):  # where wheels come from, not what is installed
            next(it, None)
            continue
        out.append(Path(word).name if word.endswith(".txt") else word)
    return tuple(out)


def _read(log: Path) -> list[tuple[str, ...]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [call for call in map(normalise, lines) if call is not None]


def trace_setup_venv(env: str, sandbox: Path) -> list[tuple[str, ...]]:
    """Run docker/setup_venv.sh <env> with a python3 whose venvs record their pip calls."""
    docker, log, fakebin = sandbox / "docker", sandbox / "calls.log", sandbox / "fakebin"
    shutil.copytree(ROOT / "docker" / "requirements", docker / "requirements")
    shutil.copy2(ROOT / "docker" / "setup_venv.sh", docker / "setup_venv.sh")
    _recorder(docker / "install_nltk_data.sh", log, "nltk-data")
    # python3 -m venv DIR makes DIR/bin/python a recorder; any other python3 call is recorded as is
    fakebin.mkdir()
    (fakebin / "python3").write_text(
        '#!/bin/bash\nif [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; '
        f'printf \'#!/bin/bash\\necho "python $*" >> "{log}"\\n\' > "$3/bin/python"; chmod +x "$3/bin/python"; exit 0; fi\n'
        f'echo "python3 $*" >> "{log}"\n')
    (fakebin / "python3").chmod(0o755)
    env_vars = {**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}", "VDMEM_VENV_CACHE": str(sandbox / "cache")}
    subprocess.run(["bash", str(docker / "setup_venv.sh"), env], env=env_vars, check=True, capture_output=True)
    return _read(log)


def trace_dockerfile(path: Path, sandbox: Path) -> list[tuple[str, ...]]:
    """Replay COPY into `sandbox` and run the package-installing RUN instructions there with a recording pip."""
    log, fakebin = sandbox / "calls.log", sandbox / "fakebin"
    _recorder(fakebin / "pip", log, "pip")
    args: dict[str, str] = {}
    for cmd in dockerfile.parse_file(str(path)):
        if cmd.cmd == "ARG" and "=" in cmd.value[0]:
            key, _, value = cmd.value[0].partition("=")
            args[key] = value
        elif cmd.cmd == "COPY" and not any(f.startswith("--from") for f in cmd.flags):
            *sources, dest = cmd.value
            for src in sources:
                target = sandbox / dest.lstrip("/")
                target = target / Path(src).name if dest.endswith("/") or len(sources) > 1 else target
                if src == ".":
                    continue  # the code itself; installs never read it
                target.parent.mkdir(parents=True, exist_ok=True)
                if Path(src).name == "install_nltk_data.sh":
                    _recorder(target, log, "nltk-data")
                else:
                    shutil.copy2(ROOT / src, target)
        elif cmd.cmd == "RUN" and re.search(r"\bpip\b|install_nltk_data", cmd.value[0]):
            script = re.sub(r"(?<![\w.])/(tmp|opt)/", f"{sandbox}/\\1/", cmd.value[0])
            env = {**os.environ, **args, "PATH": f"{fakebin}:{os.environ['PATH']}"}
            subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, check=True, capture_output=True)
    return _read(log)
