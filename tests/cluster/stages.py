"""What the cluster tests run: the project's venv interpreters and the tiny extraction they submit."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/extract/cpu_default.yaml"
SHARDS = 4


def venv_python(env: str) -> str:
    """The interpreter of one project venv (.venvs/<env>, or VDMEM_<ENV>_PYTHON to point elsewhere)."""
    path = Path(os.environ.get(f"VDMEM_{env.upper()}_PYTHON") or ROOT / ".venvs" / env / "bin" / "python")
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `make setup-{env}` (or set VDMEM_{env.upper()}_PYTHON)")
    return str(path)


def stage_overrides(demo: Path, out_root: Path) -> list[str]:
    return ["split=val", f"data.dataset={demo}/{{split}}.json", f"data.image_root={demo}/images",
            f"out_root={out_root}", "num_workers=0"]
