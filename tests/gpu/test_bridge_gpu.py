"""One training step of the real-size bridge (Llama-3.2-1B architecture, random weights, nf4) on a CUDA GPU."""
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_real_size_bridge_trains_on_the_gpu(tmp_path):
    from services.train.smoke import real_size_steps

    figures = real_size_steps("configs/train/bridge_llama32_1b.yaml", steps=2, micro_batch=8, workdir=str(tmp_path))
    print(figures)
    assert torch.isfinite(torch.tensor(figures["loss"]))
    assert figures["tokens_per_s"] > 0 and figures["peak_mem_gib"] < 0.95 * torch.cuda.get_device_properties(0).total_memory / 2**30
    import bitsandbytes as bnb  # noqa: F401  (nf4 really loaded: checked inside build via the config)
