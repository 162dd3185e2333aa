"""finetune-infer loads the base model as unsloth trained it (vision tower, projector and head out of 4-bit) and
refuses an adapter whose tensors do not fit it (peft itself only warns, then runs the base model)."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from services.train.finetune.model import SKIP_4BIT, AdapterMismatchError, load_adapter, load_base
from services.train.finetune.tiny import build_tiny_gemma3

pytestmark = pytest.mark.slow  # a tiny Gemma-3 is built, loaded 4-bit and wrapped several times (~10 s)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("gemma") / "tiny")


def unsloth_skip_list() -> list[str]:
    """unsloth_zoo.peft_utils.SKIP_QUANTIZATION_MODULES, read from the installed source (importing unsloth_zoo
    raises unless unsloth was imported first, and unsloth patches transformers)."""
    folder = Path(importlib.util.find_spec("unsloth_zoo").submodule_search_locations[0])
    for node in ast.parse((folder / "peft_utils.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SKIP_QUANTIZATION_MODULES"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{folder / 'peft_utils.py'}: SKIP_QUANTIZATION_MODULES not found")


def skipped_by_unsloth(name: str, keys: list[str]) -> bool:
    """unsloth_zoo's patched transformers matcher (patching_utils: _unsloth_should_convert_module)."""
    return any(re.match(f"{key}\\.", name) or re.match(key, name) or name.endswith(key) or f".{key}." in f".{name}."
               for key in keys)


def test_vision_tower_projector_and_head_stay_out_of_4bit(tiny):
    import bitsandbytes as bnb

    model, _ = load_base(tiny, True, "float32", CPU)
    linear = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    four_bit = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert not [n for n in four_bit if ".vision_tower." in f".{n}."]
    language = {n for n in linear if ".language_model.layers." in n}
    assert language and language <= four_bit  # the decoder's projections are nf4, as in training
    assert not [n for n in four_bit if "multi_modal_projector" in n or n.endswith("lm_head")]
    q_proj = model.model.vision_tower.encoder.layers[0].self_attn.q_proj
    assert type(q_proj) is torch.nn.Linear and q_proj.weight.dtype == torch.float32


def test_the_modules_kept_out_of_4bit_are_those_unsloth_keeps(tiny):
    """Drift guard: under transformers' own matcher our list leaves out exactly the Linear modules that unsloth's list
    leaves out under its patched one (a new unsloth entry that names a Gemma-3 module fails here)."""
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.quantizers.quantizers_utils import should_convert_module

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(tiny))
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    theirs = {n for n in names if skipped_by_unsloth(n, unsloth_skip_list())}
    ours = {n for n in names if not should_convert_module(n, SKIP_4BIT)}
    assert any("vision_tower" in n for n in theirs)
    assert ours == theirs


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory) -> Path:
    """A saved LoRA adapter on both towers with non-zero B (so it changes the output)."""
    from peft import LoraConfig, get_peft_model

    model, _ = load_base(tiny, False, "float32", CPU)
    torch.manual_seed(0)
    targets = r".*(?:vision_tower|language_model).*\.(?:q_proj|v_proj)"
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", target_modules=targets))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def _logits(model) -> torch.Tensor:
    ids = torch.tensor([[2, 4, 20, 30, 40, 5]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_a_matching_adapter_loads_and_changes_the_output(tiny, adapter):
    base, _ = load_base(tiny, False, "float32", CPU)
    plain = _logits(base)
    loaded = load_adapter(base, adapter)
    assert not loaded.training and not torch.allclose(_logits(loaded), plain)


def _edited_copy(adapter: Path, folder: Path, edit) -> Path:
    folder.mkdir()
    (folder / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    weights = load_file(adapter / "adapter_model.safetensors")
    edit(weights)
    save_file(weights, folder / "adapter_model.safetensors")
    return folder


def test_a_missing_adapter_tensor_is_an_error_naming_it(tiny, adapter, tmp_path):
    dropped = sorted(load_file(adapter / "adapter_model.safetensors"))[0]
    broken = _edited_copy(adapter, tmp_path / "missing", lambda w: w.pop(dropped))
    base, _ = load_base(tiny, False, "float32", CPU)
    module = dropped.rsplit(".lora_", 1)[0]
    with pytest.raises(AdapterMismatchError, match=r"1 adapter weights missing .*" + re.escape(module)):
        load_adapter(base, broken)


def test_a_tensor_no_module_takes_is_an_error_naming_it(tiny, adapter, tmp_path):
    bogus = "base_model.model.model.language_model.layers.0.self_attn.r_proj.lora_A.weight"
    broken = _edited_copy(adapter, tmp_path / "renamed", lambda w: w.__setitem__(bogus, torch.zeros(4, 64)))
    base, _ = load_base(tiny, False, "float32", CPU)
    with pytest.raises(AdapterMismatchError, match=r"1 saved tensors no module takes .*r_proj"):
        load_adapter(base, broken)
