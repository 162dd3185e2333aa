"""On the unsloth backend unsloth is imported before transformers, peft and trl (it patches them on import).

A stand-in `unsloth` package (first on PYTHONPATH) records which of those were already loaded when it was imported,
then fails the import as a missing unsloth would; `finetune` runs through its real command line in a fresh process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from services.train.finetune import unsloth_first
from tests.unit.train.test_finetune_data import write_split

REPO = Path(__file__).resolve().parents[3]
STUB = """import json, os, sys
with open(os.environ["UNSLOTH_STUB_LOG"], "w") as f:
    json.dump(sorted(m for m in ("trl", "transformers", "peft") if m in sys.modules), f)
raise ImportError("unsloth stand-in")
"""
# torch reports a GPU to the backend's check only, so it goes on to import unsloth (a GPU seen by transformers'
# own import would send it down CUDA-only paths that fail here)
DRIVER = """import sys, torch
cpu_only = torch.cuda.is_available
torch.cuda.is_available = lambda: sys._getframe(1).f_code.co_name == "import_unsloth" or cpu_only()
from services.train.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # a fresh interpreter through the command line (~6 s)
def test_finetune_imports_unsloth_before_what_it_patches(tmp_path):
    (tmp_path / "stub" / "unsloth").mkdir(parents=True)
    (tmp_path / "stub" / "unsloth" / "__init__.py").write_text(STUB)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # finetune checks the folder before anything else
    dialogs, images = write_split(tmp_path)  # real records: an earlier import order fails only at the model load
    log = tmp_path / "seen.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "stub"), str(REPO)]),
           "UNSLOTH_STUB_LOG": str(log)}
    out = subprocess.run([sys.executable, "-c", DRIVER, "finetune", "backend=unsloth", f"model.path={model}",
                          f"outputs_root={tmp_path / 'out'}", f"data.dialogs={dialogs}", f"data.images={images}"],
                         capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300)
    assert log.is_file(), f"unsloth was never imported:\n{out.stderr[-3000:]}"
    assert json.loads(log.read_text()) == []
    assert out.returncode != 0 and "cannot import unsloth (unsloth stand-in)" in out.stderr


def test_importing_unsloth_after_transformers_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    monkeypatch.setitem(sys.modules, "transformers", sys.modules.get("transformers") or object())
    with pytest.raises(unsloth_first.UnslothUnavailable, match=r"transformers.* already imported"):
        unsloth_first.import_unsloth()


def test_unsloth_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    with pytest.raises(unsloth_first.UnslothUnavailable, match="needs a CUDA GPU"):
        unsloth_first.import_unsloth()
