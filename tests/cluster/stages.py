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
    """The tiny extraction's overrides, as `key=value` words of the extract command line."""
    return ["split=val", f"data.dataset={demo}/{{split}}.json", f"data.image_root={demo}/images",
            f"out_root={out_root}", "num_workers=0"]


def cluster_job(tmp_path: Path, demo: Path, out_root: Path, num_shards: int) -> list[str]:
    """`--config <cluster YAML>` submitting the tiny extraction, on the local cluster's debug partition."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cluster.yaml"
    overrides = "".join(f"    {o.split('=', 1)[0]}: '{o.split('=', 1)[1]}'\n" for o in stage_overrides(demo, out_root))
    path.write_text(f"stage:\n  service: extract\n  config: {CONFIG}\n  overrides:\n{overrides}"
                    f"cluster:\n  num_shards: {num_shards}\n  python: {venv_python('extract')}\n"
                    "  job: {partition: debug, cpus_per_task: 1, timeout_min: 10}\n")
    return ["--config", str(path)]
