"""What every hostile-input case checks (the tests/unit/*/test_hostile_*.py files).

A bad input must give: the expected non-zero exit status; exactly one error line, `<svc> <verb>: error: <what>;
fix: <what to do>`, naming the file or place; no traceback; and no change to any output that existed before.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ERROR_LINE = re.compile(r"^(?P<prog>[a-z]+(?: [a-z-]+)?): error: (?P<what>.+); fix: (?P<fix>.+)$")


def error_line(stderr: str, prog: str, *mentions: str) -> str:
    """The single error line of `stderr` (log lines before it are allowed), checked for shape and mentions."""
    assert "Traceback" not in stderr, f"a traceback instead of one line:\n{stderr[-3000:]}"
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, f"expected one error line, got {len(errors)}:\n{stderr[-3000:]}"
    line = errors[0]
    match = ERROR_LINE.match(line)
    assert match, f"not `<svc> <verb>: error: ...; fix: ...`: {line!r}"
    assert match["prog"] == prog, f"prefix {match['prog']!r}, expected {prog!r}: {line!r}"
    for text in mentions:
        assert text in line, f"{text!r} missing from {line!r}"
    return line


def check(capsys, main, argv: list[str], prog: str, *mentions: str, status: int = 2) -> str:
    """Run an entry point's main(argv) in-process and check its one error line."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == status, f"exit {code}, expected {status}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
    return error_line(err, prog, *mentions)


def run(env: str, argv: list[str], cwd: Path = ROOT, wrap: list[str] | None = None,
        extra_env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python <argv>` in the project venv `env` (optionally inside `wrap`, e.g. an unshare mount), repo on path."""
    python = str(ROOT / ".venvs" / env / "bin" / "python")
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               **(extra_env or {})}
    return subprocess.run([*(wrap or []), python, *argv], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout)


def in_small_disk(folder: Path, size: str = "64k", read_only: bool = False) -> list[str]:
    """A wrapper running a command with a fresh tmpfs of `size` (or read-only) mounted at `folder`, in a private
    mount namespace: a real full disk or read-only file system, gone when the command ends."""
    options = f"size={size}" + (",ro" if read_only else "")
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o {options} tmpfs "$0" && exec "$@"', str(folder)]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (empty when it does not exist): compare before and after a case."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def python_of(env: str) -> str:
    return str(ROOT / ".venvs" / env / "bin" / "python") if env else sys.executable


def on_small_disk(env: str, argv: list[str], folder: Path, prog: str, size: str = "64k",
                  read_only: bool = False) -> str:
    """Run `python <argv>` with `folder` on a full (or read-only) tmpfs: exit 1 and one line with the fix."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = run(env, argv, wrap=in_small_disk(folder, size, read_only))
    assert proc.returncode == 1, proc.stderr
    if read_only:
        return error_line(proc.stderr, prog, "Read-only file system", "writable folder")
    return error_line(proc.stderr, prog, "No space left on device", "free space")
