"""Fixtures of the extract tests (helpers live in extract_helpers.py, importable by name)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so tests and this file import extract_helpers by name
from extract_helpers import TINY_ARCH  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A state dict of the tiny ImageBind (random weights, fixed seed) saved like imagebind_huge.pth."""
    import torch

    from services.extract.imagebind import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "imagebind_tiny.pth"
    torch.save(build_model(TINY_ARCH).state_dict(), path)
    return path
