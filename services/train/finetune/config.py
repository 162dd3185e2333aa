"""Settings of the Gemma-3 `<reminder>` fine-tuning verbs `finetune`, `finetune-infer` and `tiny-gemma`.

Imports nothing heavy (no torch), so every shipped YAML validates from any environment. The defaults are the original
project's recipe (unsloth/gemma-3-4b-it, 4-bit, LoRA r=16 alpha=16 dropout 0 on vision+language attention+MLP, batch
2 x grad-accum 4, lr 1e-5, adamw_8bit, bf16, max_seq_length 2048); docs/FINETUNE.md explains every switch. Run
identity, locations, device, optimiser and LoRA basics are the shared classes of shared/settings.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from shared.config import ConfigError
from shared.memory import GateConfig, MemoryConfig
from shared.settings import (CheckpointSettings, DeviceSettings, DialogSelection, LoraSettings, OptimSettings,
                             RunSettings)

ADAPTER_DIR = "adapter"  # <run_dir>/adapter: the finished adapter, its processor and the training config
TRAIN_CONFIG = "finetune_config.yaml"  # the training config saved beside the adapter (read by finetune-infer)


@dataclass
class FinetuneModelSettings:
    """The base vision-language model: a local folder (config.json + weights + processor/tokenizer files)."""

    path: str = "checkpoints/gemma-3-4b-it"
    load_in_4bit: bool = True  # QLoRA: nf4 base weights via bitsandbytes (unsloth on CUDA; bnb works on CPU too)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # weights / 4-bit compute dtype
    gradient_checkpointing: bool = True  # recompute activations in backward: less memory, ~30% more time
    max_seq_length: int = 2048  # a longer record is an error naming it (never silently cut: image tokens)


@dataclass
class FinetuneLoraSettings(LoraSettings):
    """LoRA adapters; the four switches choose where they go (the same meaning as unsloth's get_peft_model)."""

    enabled: bool = True  # fine-tuning trains the adapters only, so this stays true
    r: int = 16
    alpha: int = 16
    finetune_vision_layers: bool = True  # the SigLIP vision tower's encoder layers
    finetune_language_layers: bool = True  # the Gemma-3 language model's decoder layers
    finetune_attention_modules: bool = True  # q/k/v/o_proj (SigLIP: q/k/v/out_proj)
    finetune_mlp_modules: bool = True  # gate/up/down_proj (SigLIP: fc1/fc2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.enabled:
            raise ConfigError("lora.enabled=false: fine-tuning trains LoRA adapters and nothing else",
                              fix="keep lora.enabled=true")
        if not (self.finetune_vision_layers or self.finetune_language_layers):
            raise ConfigError("lora: finetune_vision_layers and finetune_language_layers are both false",
                              fix="enable one of them")
        if not (self.finetune_attention_modules or self.finetune_mlp_modules):
            raise ConfigError("lora: finetune_attention_modules and finetune_mlp_modules are both false",
                              fix="enable one of them")


@dataclass
class FinetuneDataSettings(DialogSelection):
    """Where records come from and what the response holds (docs/FINETUNE.md, "Records")."""

    source: Literal["visdial", "generated"] = "visdial"  # visdial: `dialogs`; generated: `generated`
    images: str = "data/demo/images"  # folder scanned by shared.images.ImageIndex
    generated: str = "outputs/gen-reason/records.jsonl"  # services.generate records (source=generated)
    # none: response = the answer; retrieved: shared.memory's top-k earlier turns as <reminder> + the answer;
    # gated: that <reminder> only in rounds whose question needs the past (`gate`), the bare answer elsewhere;
    # generated: the LLM-written <reminder> + answer of the generate service's records (source=generated only).
    reminder: Literal["none", "retrieved", "gated", "generated"] = "retrieved"
    reminder_top_k: int = 3
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # recency/frequency/saliency/relevance weights
    gate: GateConfig = field(default_factory=GateConfig)  # when `gated` puts a reminder into the response
    caption: bool = True  # start the conversation with the dataset caption
    instruction: str | None = None  # text before the conversation; null = the built-in one for `reminder`
    num_workers: int = 0  # data-loader processes (image decoding); 0 = in the training process


@dataclass
class FinetuneOptimSettings(OptimSettings):
    """Optimisation (the Hugging Face Trainer's arguments): micro_batch_size per device, accumulation to batch_size."""

    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 5
    max_steps: int = 60
    batch_size: int = 8
    micro_batch_size: int = 2
    clip_norm: float = 0.3
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    optimizer: Literal["adamw_8bit", "adamw_torch", "paged_adamw_8bit"] = "adamw_8bit"
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"


@dataclass
class FinetuneConfig(CheckpointSettings, DeviceSettings, RunSettings):
    """Gemma-3 LoRA fine-tuning: <outputs_root>/<run>/ gets config.yaml, metrics.jsonl, loss.png, summary.json,
    resumable checkpoints (checkpoints/checkpoint-<step>/) and the finished adapter (adapter/)."""

    run: str = "gemma3_reminder"
    save_every: int = 20
    log_every: int = 1
    seed: int = 3407
    backend: Literal["auto", "unsloth", "peft"] = "auto"  # auto = unsloth when CUDA is available, else peft
    model: FinetuneModelSettings = field(default_factory=FinetuneModelSettings)
    lora: FinetuneLoraSettings = field(default_factory=FinetuneLoraSettings)
    data: FinetuneDataSettings = field(default_factory=FinetuneDataSettings)
    optim: FinetuneOptimSettings = field(default_factory=FinetuneOptimSettings)
    # unsloth's collator masks everything before the last response_part (the assistant turn header of the template)
    instruction_part: str = "<start_of_turn>user\n"
    response_part: str = "<start_of_turn>model\n"
    stop_at_step: int | None = None  # stop (as if interrupted) after this step's checkpoint: time-boxed jobs, tests

    moved_keys: ClassVar[dict[str, str]] = {
        **RunSettings.moved_keys,
        "train": "the `train` section is now `optim` (max_grad_norm -> clip_norm, batch_size -> micro_batch_size, "
                 "grad_accum -> batch_size = micro_batch_size x grad_accum, optim -> optimizer); "
                 "save_every, keep_checkpoints, log_every and stop_at_step are top-level keys, max_seq_length is "
                 "model.max_seq_length and num_workers data.num_workers"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data.reminder == "generated" and self.data.source != "generated":
            raise ConfigError("data.reminder=generated needs data.source=generated (the gen-reason records.jsonl)",
                              fix="with data.source=visdial use data.reminder=retrieved, gated or none")
        if self.data.source == "generated" and self.data.reminder in ("retrieved", "gated"):
            raise ConfigError("data.source=generated carries its own reminders",
                              fix="use data.reminder=generated (keep them) or none (answer only)")


@dataclass
class FinetuneInferConfig(DeviceSettings, RunSettings):
    """Answers from a fine-tuned adapter: one image + conversation (printed), or every selected round of a split
    (<outputs_root>/<run>/predictions.jsonl, resumable)."""

    run: str = "gemma3_reminder"  # reads <outputs_root>/<run>/adapter, writes <outputs_root>/<run>/predictions.jsonl
    adapter: str | None = None  # adapter folder; null = <outputs_root>/<run>/adapter; "none" = the base model alone
    base_model: str | None = None  # null = model.path of the training config saved with the adapter
    load_in_4bit: bool | None = None  # null = as trained
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto = as trained (float32 on CPU)
    # single example: both set (CLI: image=path/to.png conversation='Q: ...\nA: ...\nQ: ...\nA:')
    image: str | None = None
    conversation: str | None = None
    # batch over a split (when image/conversation are unset)
    data: DialogSelection = field(default_factory=lambda: DialogSelection(dialogs="data/demo/val.json"))
    images: str = "data/demo/images"  # folder scanned by shared.images.ImageIndex
    out: str | None = None  # null = <outputs_root>/<run>/predictions.jsonl
    batch_size: int = 4
    max_new_tokens: int = 96  # the reminder block comes first, so leave room for it

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.image is None) != (self.conversation is None):
            raise ConfigError("single-example inference needs both image=... and conversation=...",
                              fix="give both, or leave both unset to predict over a split")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError(f"batch_size={self.batch_size}, max_new_tokens={self.max_new_tokens}",
                              fix="give both >= 1")


@dataclass
class TinyGemmaConfig:
    """A tiny random-weight Gemma-3 vision-language folder for CPU runs and tests (nothing is downloaded)."""

    out: str = "checkpoints/gemma3-tiny-random"  # folder to write (model + processor)
    seed: int = 0
    hidden: int = 64  # width; a multiple of 64 (bitsandbytes' 4-bit block)
    layers: int = 2

    def __post_init__(self) -> None:
        if self.hidden < 64 or self.hidden % 64 or self.layers < 1:
            raise ConfigError(f"hidden={self.hidden}, layers={self.layers}",
                              fix="hidden must be a multiple of 64 (at least 64) and layers >= 1")
