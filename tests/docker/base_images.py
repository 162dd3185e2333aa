"""Base images made on this machine, standing in for the registry images the Dockerfiles name by default.

There is no image registry here, so `nvidia/cuda:...` and `python:3.11-slim` cannot be pulled. Debian bookworm's
minimal root filesystem (debootstrap, from the mirror apt already uses) is imported as an image; it has the
python3.11 / python3.11-venv packages the CUDA Dockerfiles install, so it stands in through `CUDA_IMAGE`. For
`python:3.11-slim` (evaluate, `PYTHON_IMAGE`) that base gets python3.11 as `python` (python-base.Dockerfile).
Both are kept in the persistent data-root and made only when missing, so later builds keep hitting the cache.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.docker.engine import DockerEngine

HERE = Path(__file__).resolve().parent
DEBIAN = "vdmem-test/debian:bookworm-minbase"
PYTHON = "vdmem-test/python:3.11-bookworm"
SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive apt uses here (deb822 .sources or one-line .list), so debootstrap needs no other host."""
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, flags=re.M))
            if SUITE in fields.get("Suites", "").split() and "main" in fields.get("Components", "").split():
                return fields["URIs"].split()[0]
    for path in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s+.*\bmain\b", line)
                if m:
                    return m.group(1)
    return FALLBACK_MIRROR


def ensure_debian(engine: DockerEngine) -> str:
    """Import a bookworm minbase root filesystem as DEBIAN unless the engine has it (~1 min, ~150 MB)."""
    if engine.has_image(DEBIAN):
        return DEBIAN
    work = Path(tempfile.mkdtemp(prefix="vdmem-rootfs-"))
    try:
        rootfs = work / "rootfs"
        mirror = debian_mirror()
        proc = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
                              capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"debootstrap {SUITE} from {mirror} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        # as in Docker's official Debian images: no package lists or caches in the base layer
        for junk in ("var/lib/apt/lists", "var/cache/apt"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        engine.docker("import", "-", DEBIAN, stdin=tar.stdout)
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError(f"tar of {rootfs} failed")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return DEBIAN


def ensure_python(engine: DockerEngine) -> str:
    """PYTHON from DEBIAN (cached like any build)."""
    ensure_debian(engine)
    with open(HERE / "python-base.Dockerfile", "rb") as dockerfile:  # on stdin: a build without a context
        engine.docker("build", "--network", "host", "--progress", "plain", "--build-arg", f"BASE_IMAGE={DEBIAN}",
                      "-t", PYTHON, "-", stdin=dockerfile, timeout=900, text=False)
    return PYTHON
