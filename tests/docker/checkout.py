"""A user's checkout of the project and that user's Docker client, for running the pipeline through compose.yaml.

The tests run as root (dockerd needs it), but the point is a non-root user: the checkout is a copy of this
repository owned by USER, and `docker compose` / `make` run as USER (setpriv), who reaches the engine's socket
through its group, as a member of the `docker` group would. `id -u` then gives USER, as on a workstation, and the
containers run as USER through compose.yaml's `user: ${UID}:${GID}`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.docker.engine import DOCKER, DockerEngine

ROOT = Path(__file__).resolve().parents[2]
USER = (4321, 4321)  # not root, and not Compose's fallback 1000, so a UID that is not passed on shows
OFFLINE = "tests/docker/compose.offline.yaml"  # network_mode none: the test engine has no bridge


def copy_checkout(dst: Path, owner: tuple[int, int] = USER) -> Path:
    """Tracked and untracked-but-not-ignored files of this worktree (what a commit would hold) -> dst, owned by owner."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the worktree is not part of it
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    for folder in ("data", "checkpoints", "outputs", "embeddings"):
        (dst / folder).mkdir(exist_ok=True)
    chown_tree(dst, owner)
    dst.chmod(0o755)
    return dst


def chown_tree(path: Path, owner: tuple[int, int]) -> None:
    subprocess.run(["chown", "-R", f"{owner[0]}:{owner[1]}", str(path)], check=True)


class UserClient:
    """Commands run as `owner` in `checkout`, against `engine`, with the 20.10 docker client first on PATH."""

    def __init__(self, engine: DockerEngine, checkout: Path, owner: tuple[int, int] = USER):
        self.engine, self.checkout, self.owner = engine, checkout, owner
        self.bin = checkout.parent / f"{checkout.name}-bin"
        self.bin.mkdir(exist_ok=True)
        (self.bin / "docker").unlink(missing_ok=True)
        (self.bin / "docker").symlink_to(DOCKER)
        self.bin.chmod(0o755)

    @property
    def env(self) -> dict[str, str]:
        """A plain login-like environment: no PIP_*, no root settings; UID/GID exported as compose.yaml asks."""
        return {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.checkout), "LANG": "C.UTF-8",
                "DOCKER_HOST": self.engine.env["DOCKER_HOST"], "DOCKER_CONFIG": self.engine.env["DOCKER_CONFIG"],
                "COMPOSE_FILE": f"{self.checkout / 'compose.yaml'}:{self.checkout / OFFLINE}",
                "UID": str(self.owner[0]), "GID": str(self.owner[1])}

    def argv(self, *args: str) -> list[str]:
        return ["setpriv", f"--reuid={self.owner[0]}", f"--regid={self.owner[1]}", "--clear-groups", *args]

    def run(self, *args: str, timeout: float = 900, check: bool = True, env: dict | None = None,
            ) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*args), cwd=self.checkout, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n"
                                 f"{proc.stderr[-6000:]}")
        return proc

    def compose(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("docker", "compose", *args, **kw)

    def popen(self, *args: str, log: Path) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen(self.argv(*args), cwd=self.checkout, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT)


def owners(folder: Path) -> set[tuple[int, int]]:
    """(uid, gid) of every file and folder below `folder`, itself included."""
    found = {(os.lstat(folder).st_uid, os.lstat(folder).st_gid)}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            found.add((st.st_uid, st.st_gid))
    return found
