"""Extraction on CUDA (skipped without a GPU or outside the extract venv): bf16 autocast, pinned memory, ImageBind-Huge.

Run with the extract environment: `.venvs/extract/bin/python -m pytest -q tests/gpu/test_extract_gpu.py`.
"""
import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("imagebind", reason="needs the extract venv (ImageBind's code)")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit/extract"))
from extract_helpers import TINY_ARCH, make_split, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from services.extract.imagebind import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "imagebind_tiny.pth"
    torch.save(build_model(TINY_ARCH).state_dict(), path)
    return path


def test_cuda_run_matches_cpu_run(tmp_path, checkpoint):
    import numpy as np

    from services.extract import pipeline
    from shared.shards import ShardSet

    make_split(tmp_path / "data", "train", dialogs=6, rounds=3, per_round_images=True)
    sets = {}
    for device in ("cpu", "cuda"):
        cfg = tiny_config(tmp_path, checkpoint, split="train", device=device, num_workers=2,
                          out_root=tmp_path / device)
        pipeline.extract(cfg)
        sets[device] = ShardSet(cfg.out_dir, verify=True)
    rows = np.arange(6)
    for name in ("image", "question", "round_image"):
        a = sets["cpu"].get(name, rows).astype(np.float32).reshape(-1, TINY_ARCH["out_embed_dim"])
        b = sets["cuda"].get(name, rows).astype(np.float32).reshape(-1, TINY_ARCH["out_embed_dim"])
        live = np.abs(a).sum(1) > 0
        cosine = (a[live] * b[live]).sum(1) / (np.linalg.norm(a[live], axis=1) * np.linalg.norm(b[live], axis=1))
        assert cosine.min() > 0.98, name  # bf16 autocast on CUDA vs fp32 on CPU


def test_imagebind_huge_architecture_bf16_forward():
    from services.extract.imagebind import HUGE, build_model

    model = build_model({}).eval().cuda()
    x = torch.randn(4, 3, 224, 224, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = model({"vision": x})["vision"].float()
    assert out.shape == (4, HUGE["out_embed_dim"]) and torch.isfinite(out).all()
    assert torch.allclose(out.norm(dim=-1), torch.ones(4, device="cuda"), atol=1e-2)
    assert json.dumps(HUGE)  # the architecture recorded in shard metadata is plain JSON
