"""Where pip inside a test build gets wheels: this machine's pip configuration, made reachable from the build.

`pip config list` may name local folders (find-links, file:// indexes) and a CA bundle. A build cannot see the host's
files, so the folders are served read-only over HTTP on 127.0.0.1 (the build runs with --network host; pip treats
loopback as a secure origin) and the bundle is handed over as a BuildKit secret. Both arrive through the Dockerfiles'
optional secrets (`pip.conf`, `ca-bundle`), which are neither stored in a layer nor part of the cache key: a new
port on every run leaves the layers cached.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

CA_TARGET = "/run/secrets/ca-bundle"  # where the Dockerfiles mount the ca-bundle secret


def host_pip_config() -> dict[str, str]:
    """`pip config list` as {option: value}; an environment variable (PIP_...) wins over a config file."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
    found: dict[str, tuple[int, str]] = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^([^.]*)\.([\w-]+)='(.*)'$", line)
        if m:
            section, key, value = m.groups()
            rank = {":env:": 2, "global": 0}.get(section, 1)  # env > [install]/[download] > [global]
            if key not in found or rank >= found[key][0]:
                found[key] = (rank, value)
    return {k: v for k, (_, v) in found.items()}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves absolute file paths, but only below the allowed folders."""

    def __init__(self, *args, allowed: tuple[str, ...], **kw):
        self.allowed = allowed
        super().__init__(*args, directory="/", **kw)

    def send_head(self):
        path = os.path.realpath(unquote(urlparse(self.path).path))
        if not any(path == a or path.startswith(a + os.sep) for a in self.allowed):
            self.send_error(404, "not served")
            return None
        return super().send_head()

    def log_message(self, *args) -> None:  # pip's own output says what it fetched
        pass


class PipSources:
    """The host's pip sources for a build: `start()`, then `pip_conf()` and `secrets()`, then `stop()`."""

    def __init__(self, config: dict[str, str] | None = None):
        self.config = host_pip_config() if config is None else config
        self.server: http.server.ThreadingHTTPServer | None = None

    def _local(self, value: str) -> list[tuple[str, Path]]:
        """(original, local folder) for each whitespace-separated entry that is a path or file:// URL."""
        out = []
        for item in value.split():
            path = Path(unquote(urlparse(item).path)) if item.startswith("file://") else Path(item)
            if (item.startswith("file://") or item.startswith("/")) and path.is_dir():
                out.append((item, path))
        return out

    def start(self) -> PipSources:
        allowed = []
        for key in ("index-url", "extra-index-url", "find-links"):
            for _, path in self._local(self.config.get(key, "")):
                # a PEP 503 tree links its files relative to itself (../../files/x.whl): serve the tree's parent
                allowed.append(str(path.resolve().parent if key != "find-links" else path.resolve()))
        handler = functools.partial(_Handler, allowed=tuple(allowed))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _url(self, item: str) -> str:
        for original, path in self._local(item):
            return f"http://127.0.0.1:{self.server.server_address[1]}{path.resolve()}/"
        return item

    def pip_conf(self) -> str:
        """A pip.conf for the build: the host's sources (local ones as loopback URLs) and CA bundle, nothing else."""
        lines = ["[global]"]
        for key in ("index-url", "extra-index-url", "find-links"):
            if self.config.get(key):
                lines.append(f"{key} = " + " ".join(self._url(i) for i in self.config[key].split()))
        if self.config.get("cert"):
            lines.append(f"cert = {CA_TARGET}")
        for key in ("timeout", "default-timeout", "retries"):
            if self.config.get(key):
                lines.append(f"{key.replace('default-', '')} = {self.config[key]}")
        return "\n".join(lines) + "\n"

    def secrets(self, folder: Path) -> dict[str, Path]:
        """{secret id: file} to pass as `--secret id=...,src=...`."""
        conf = folder / "pip.conf"
        conf.write_text(self.pip_conf())
        out = {"pip.conf": conf}
        if self.config.get("cert"):
            out["ca-bundle"] = Path(self.config["cert"])
        return out

    def index_url(self) -> str:
        """The index pip uses here (for build arguments that must name one)."""
        return self.config.get("index-url") or "https://pypi.org/simple"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def resolves(url: str) -> bool:
    """Whether the host of `url` has an address here (e.g. PyTorch's own wheel index does not, on these machines)."""
    try:
        socket.getaddrinfo(urlparse(url).hostname, 443)
    except OSError:
        return False
    return True
