"""The peft backend's model: a local Gemma-3 (any image-text-to-text) folder, optional 4-bit, LoRA adapters.

The LoRA targets come from the same four switches as unsloth's `FastVisionModel.get_peft_model`: vision tower
and/or language model, attention and/or MLP projections. SigLIP names its projections differently from Gemma
(out_proj / fc1 / fc2 instead of o_proj / gate,up,down_proj), so each tower has its own name list; the vision
tower's pooling head is left out because Gemma-3 never runs it (its adapters would get no gradient).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from services.train.finetune.config import TRAIN_CONFIG, FinetuneLoraSettings
from shared.errors import InputError
from shared.settings import torch_device

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION = {"vision": ("q_proj", "k_proj", "v_proj", "out_proj"), "language": ("q_proj", "k_proj", "v_proj", "o_proj")}
MLP = {"vision": ("fc1", "fc2"), "language": ("gate_proj", "up_proj", "down_proj")}
# Decoder/encoder layer stacks of each tower (transformers 4.x nests the vision encoder under vision_model).
LAYERS = {"vision": r"vision_tower\.(?:.*\.)?encoder\.layers", "language": r"language_model\.(?:.*\.)?layers"}
# Kept out of 4-bit, as unsloth keeps them while training (the entries of unsloth_zoo's peft_utils
# SKIP_QUANTIZATION_MODULES that a Gemma-3 has): the output head, the image-to-text projector and the whole SigLIP
# vision tower. Otherwise finetune-infer would run the vision adapters on nf4 weights they were never trained on.
# unsloth matches these names as components anywhere in a module name; transformers 5.17 matches a skip key only at
# the start (re.match) or the end of the name, so here each is a regex that allows any prefix of components.
SKIP_4BIT_MODULES = ("lm_head", "multi_modal_projector", "vision_tower")
SKIP_4BIT = [rf"(?:.*\.)?{name}" for name in SKIP_4BIT_MODULES]


def lora_target_regex(lora: FinetuneLoraSettings) -> str:
    """A regex for peft's `target_modules` (matched against full module names with re.fullmatch).

    Example: language + attention only -> `.*(?:language_model\\.(?:.*\\.)?layers\\.\\d+\\.(?:self_attn|mlp)\\.
    (?:q_proj|k_proj|v_proj|o_proj))`.
    """
    parts = []
    for tower, enabled in (("vision", lora.finetune_vision_layers), ("language", lora.finetune_language_layers)):
        if not enabled:
            continue
        names = (ATTENTION[tower] if lora.finetune_attention_modules else ()) + \
                (MLP[tower] if lora.finetune_mlp_modules else ())
        parts.append(rf"{LAYERS[tower]}\.\d+\.(?:self_attn|mlp)\.(?:{'|'.join(names)})")
    if not parts:
        raise ValueError("LoRA switches select no module; enable a tower and a module kind")
    return rf".*(?:{'|'.join(parts)})"


def resolve_device(name: str) -> torch.device:
    return torch_device(name)


def check_model_dir(path: str | Path) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        hint = (f"create it with `python -m services.train tiny-gemma out={folder}`"
                if "tiny" in folder.name else
                "place the Hugging Face folder of unsloth/gemma-3-4b-it there (see checkpoints/README.md)")
        raise FileNotFoundError(f"{folder}: no model folder (config.json missing); {hint}")
    return folder


def load_base(path: str | Path, load_in_4bit: bool, dtype: str, device: torch.device):
    """(model, processor) from a local folder; the base weights are frozen."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    folder = check_model_dir(path)
    torch_dtype = DTYPES[dtype]
    kwargs: dict = {"dtype": torch_dtype}
    if load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype, llm_int8_skip_modules=SKIP_4BIT)
        kwargs["device_map"] = {"": str(device)}
    model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
    if not load_in_4bit:
        model.to(device)
    processor = AutoProcessor.from_pretrained(folder)
    if getattr(processor, "image_processor", None) is None:
        raise ValueError(f"{folder}: the processor has no image processor (preprocessor_config.json missing); "
                         "copy the processor files of the base model into the folder")
    model.requires_grad_(False)
    return model, processor


def attach_lora(model, lora: FinetuneLoraSettings, quantized: bool, gradient_checkpointing: bool, seed: int):
    """Wrap `model` with fresh LoRA adapters (trainable) on the modules the switches select."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:  # norms to float32, inputs that require grad (for checkpointing through frozen embeddings)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    torch.manual_seed(seed)  # the adapters' random A matrices
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                        target_modules=lora_target_regex(lora), task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ValueError(f"no module matched the LoRA switches ({lora_target_regex(lora)}); is this a Gemma-3 model?")
    log.info("LoRA: %d trainable parameters (%s)", trainable, lora_target_regex(lora))
    return model


class AdapterMismatchError(InputError):
    """A saved adapter whose tensors do not fit the modules of the base model it is loaded into."""


def load_adapter(model, adapter_dir: str | Path):
    """The base model with a saved PEFT adapter folder (adapter_config.json + adapter_model.safetensors).

    PeftModel.from_pretrained only warns about adapter weights it finds no place for (and says nothing about saved
    tensors no module takes): a naming mismatch would leave those adapters at their initial values, i.e. silently run
    the base model. So the adapter is attached and loaded in two steps and the load result is checked.
    """
    from peft import MODEL_TYPE_TO_PEFT_MODEL_MAPPING, PeftConfig, PeftModel

    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file() or not (folder / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}: no PEFT adapter (adapter_config.json + adapter_model.safetensors); "
                                "train one with `python -m services.train finetune --config ...` or set adapter=")
    config = PeftConfig.from_pretrained(folder)
    config.inference_mode = True
    wrapper = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(config.task_type, PeftModel)
    peft_model = wrapper(model, config, adapter_name="default")
    result = peft_model.load_adapter(folder, adapter_name="default", is_trainable=False)
    missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
    if missing or unexpected:
        raise AdapterMismatchError(
            f"{folder / 'adapter_model.safetensors'}: does not fit the base model: {len(missing)} adapter weights "
            f"missing (e.g. {missing[:3]}), {len(unexpected)} saved tensors no module takes (e.g. {unexpected[:3]})",
            fix="load it onto the base model it was trained on (base_model=, or model.path in "
                f"{folder / TRAIN_CONFIG})")
    return peft_model
