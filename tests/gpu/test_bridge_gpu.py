"""One training step of the real-size bridge (Llama-3.2-1B architecture, random weights, nf4) on a CUDA GPU."""
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_real_size_bridge_trains_on_the_gpu(tmp_path, monkeypatch):
    import bitsandbytes as bnb

    from services.train.bridge import smoke

    built = {}
    original = smoke.build

    def spy(*args, **kwargs):  # keep the LLM to check that it really was loaded 4-bit
        built["parts"] = original(*args, **kwargs)
        return built["parts"]

    monkeypatch.setattr(smoke, "build", spy)
    figures = smoke.real_size_steps("configs/train/bridge_llama32_1b.yaml", steps=2, micro_batch=8,
                                    workdir=str(tmp_path))
    print(figures)
    _, llm, _ = built["parts"]
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in llm.modules())
    assert torch.isfinite(torch.tensor(figures["loss"])) and figures["tokens_per_s"] > 0
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    assert figures["peak_mem_gib"] < 0.95 * total
