"""A private Docker engine for tests: dockerd started as our child process and stopped by its PID.

Its image store (the data-root) is persistent, under the project's cache (cache_root()/docker/root), so a second
session on the same machine finds every layer already built; its run-time state (exec-root, API socket) lives in a
short temporary folder (unix socket paths must stay under 108 bytes). No bridge and no iptables: the test containers
run with network_mode none and builds use --network host, so the engine never touches the host's network setup.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# The Debian docker.io client: it builds with BuildKit (DOCKER_BUILDKIT=1) without the buildx plugin; another
# `docker` earlier on PATH may lack both.
DOCKER = "/usr/bin/docker"
BINARIES = ("dockerd", DOCKER, "debootstrap", "setpriv")
INSTALL_HINT = ("run .ci/run, or: apt-get update && apt-get install -y --no-install-recommends docker.io iptables "
                "debootstrap")


def cache_root() -> Path:
    """The project's cache: VDMEM_CACHE, else the parent of VDMEM_VENV_CACHE, else ~/.cache/vdmem (as make setup)."""
    if os.environ.get("VDMEM_CACHE"):
        return Path(os.environ["VDMEM_CACHE"])
    if os.environ.get("VDMEM_VENV_CACHE"):
        return Path(os.environ["VDMEM_VENV_CACHE"]).parent
    return Path.home() / ".cache" / "vdmem"


def missing_binaries() -> list[str]:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, even by SIGKILL, so no dockerd is left behind."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _dockerd_alive(pid: int) -> bool:
    """Whether `pid` is a running dockerd (a pidfile's number may have been reused by another program)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except OSError:
        return False


class DockerEngine:
    """`start()`, then `env` for clients (DOCKER_HOST ...) and `docker(...)`; `stop()` ends it and what it started."""

    def __init__(self, data_root: Path, socket_group: int | None = None):
        self.data_root = data_root
        self.pidfile = data_root.parent / "dockerd.pid"  # beside the data-root, so a leftover engine is found
        self.socket_group = socket_group
        self.run_dir = Path(tempfile.mkdtemp(prefix="vdmem-dockerd-"))
        self.run_dir.chmod(0o755)  # the socket's group (a non-root test user) must reach it
        self.socket = self.run_dir / "docker.sock"
        self.log = self.run_dir / "dockerd.log"
        self.config_dir = self.run_dir / "config"  # a DOCKER_CONFIG of our own: never the user's settings
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.config_dir),
                "DOCKER_BUILDKIT": "1"}

    def start(self, compose_binary: str, timeout_s: float = 90) -> DockerEngine:
        try:
            self._start(compose_binary, timeout_s)
        except BaseException:
            self.stop()  # never leave half an engine running
            raise
        return self

    def _claim_data_root(self) -> None:
        if self.pidfile.exists():
            pid = int(self.pidfile.read_text().strip() or 0)
            if pid and _dockerd_alive(pid):
                raise RuntimeError(f"another dockerd (pid {pid}) uses {self.data_root}; stop it first "
                                   f"(kill {pid}) or point VDMEM_CACHE elsewhere")
            self.pidfile.unlink()  # left by an engine that was killed

    def _start(self, compose_binary: str, timeout_s: float) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._claim_data_root()
        # `docker compose` finds Compose as a CLI plugin here; a copy, so a non-root user can run it too
        plugins = self.config_dir / "cli-plugins"
        plugins.mkdir(parents=True)
        shutil.copy2(compose_binary, plugins / "docker-compose")
        (self.config_dir / "config.json").write_text("{}")
        self.config_dir.chmod(0o755)
        argv = [shutil.which("dockerd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"),
                "--data-root", str(self.data_root), "--exec-root", str(self.run_dir / "exec"),
                "--pidfile", str(self.pidfile), "-H", f"unix://{self.socket}", "--storage-driver=overlay2",
                "--bridge=none", "--iptables=false", "--ip-masq=false"]
        if self.socket_group is not None:
            argv += ["--group", str(self.socket_group)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}:\n{self.logs()}")
            if self.socket.exists() and self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"dockerd did not answer within {timeout_s} s:\n{self.logs()}")

    def logs(self, tail: int = 40) -> str:
        if not self.log.exists():
            return "(no dockerd log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-tail:])

    def docker(self, *args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        """Run the docker client against this engine; text output unless text=False is given."""
        kw.setdefault("text", True)
        proc = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            out, err = (s if isinstance(s, str) else s.decode(errors="replace") for s in (proc.stdout, proc.stderr))
            raise RuntimeError(f"docker {' '.join(args)} exited {proc.returncode}:\n{out[-2000:]}\n{err[-4000:]}")
        return proc

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def image_size(self, ref: str) -> int:
        return int(json.loads(self.docker("image", "inspect", ref).stdout)[0]["Size"])

    def stop(self) -> None:
        """Remove every container, stop dockerd by PID (it stops its own containerd), remove the run folder."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                left = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
                if left:
                    self.docker("rm", "-f", *left, check=False, timeout=60)
            except subprocess.TimeoutExpired:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # dockerd and the containerd it started
                self.proc.wait()
        self.proc = None
        if self.pidfile.exists() and not _dockerd_alive(int(self.pidfile.read_text().strip() or 0)):
            self.pidfile.unlink()
        shutil.rmtree(self.run_dir, ignore_errors=True)
