"""Config dataclasses of the Gemma-3 `<reminder>` fine-tuning jobs `finetune` and `finetune-infer`.

Imports nothing heavy (no torch), so every shipped YAML validates from any environment. The defaults are the seed's
recipe (unsloth/gemma-3-4b-it, 4-bit, LoRA r=16 alpha=16 dropout 0 on vision+language attention+MLP, batch 2 x
grad-accum 4, lr 1e-5, adamw_8bit, bf16, max_seq_length 2048); docs/FINETUNE.md explains every switch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError
from shared.memory import MemoryConfig


@dataclass
class FinetuneModelSettings:
    """The base vision-language model: a local folder (config.json + weights + processor/tokenizer files)."""

    path: str = "checkpoints/gemma-3-4b-it"
    load_in_4bit: bool = True  # QLoRA: nf4 base weights via bitsandbytes (unsloth on CUDA; bnb works on CPU too)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # weights / 4-bit compute dtype
    gradient_checkpointing: bool = True  # recompute activations in backward: less memory, ~30% more time


@dataclass
class FinetuneLoraSettings:
    """LoRA adapters; the four switches choose where they go (the same meaning as unsloth's get_peft_model)."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    finetune_vision_layers: bool = True  # the SigLIP vision tower's encoder layers
    finetune_language_layers: bool = True  # the Gemma-3 language model's decoder layers
    finetune_attention_modules: bool = True  # q/k/v/o_proj (SigLIP: q/k/v/out_proj)
    finetune_mlp_modules: bool = True  # gate/up/down_proj (SigLIP: fc1/fc2)


@dataclass
class FinetuneDataSettings:
    """Where records come from and what the response holds (docs/FINETUNE.md, "Records")."""

    source: Literal["visdial", "generated"] = "visdial"
    dialogs: str = "data/demo/train.json"  # VisDial-format split (source=visdial)
    images: str = "data/demo/images"  # folder scanned by shared.images.ImageIndex
    generated: str = "outputs/generate/gen_reason/records.jsonl"  # services.generate records (source=generated)
    # none: response = the answer; retrieved: shared.memory's top-k earlier turns as <reminder> + the answer;
    # generated: the LLM-written <reminder> + answer of the generate service's records (source=generated only).
    reminder: Literal["none", "retrieved", "generated"] = "retrieved"
    reminder_top_k: int = 3
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # recency/frequency/saliency/relevance weights
    rounds: Literal["all", "memory", "current", "last"] = "all"  # which rounds of each dialog become records
    caption: bool = True  # start the conversation with the dataset caption
    instruction: str | None = None  # text before the conversation; None = the built-in one for `reminder`
    limit_dialogs: int | None = None  # first N dialogs (or generated records) only: smoke runs


@dataclass
class FinetuneTrainSettings:
    """Optimisation (HF Trainer / TRL SFTTrainer arguments)."""

    batch_size: int = 2  # per device
    grad_accum: int = 4
    lr: float = 1e-5
    warmup_steps: int = 5
    weight_decay: float = 0.01
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    optim: Literal["adamw_8bit", "adamw_torch", "paged_adamw_8bit"] = "adamw_8bit"
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    max_grad_norm: float = 0.3
    max_seq_length: int = 2048  # a longer record is an error naming it (never silently cut: image tokens)
    max_steps: int = 60  # optimizer steps; 0 = run `epochs` epochs
    epochs: float = 1.0
    save_every: int = 20  # optimizer steps between resumable checkpoints (and at the end)
    keep_checkpoints: int = 2
    log_every: int = 1
    stop_at_step: int | None = None  # stop (as if interrupted) after this step's checkpoint: time-boxed jobs, tests
    num_workers: int = 0  # data-loader processes (image decoding)


@dataclass
class FinetuneConfig:
    run: str = "gemma3_reminder"  # adapters -> checkpoints/<run>/, logs + config -> outputs/<run>/
    outputs_root: str = "outputs"
    checkpoints_root: str = "checkpoints"
    seed: int = 3407
    backend: Literal["auto", "unsloth", "peft"] = "auto"  # auto = unsloth when CUDA is available, else peft
    device: Literal["auto", "cpu", "cuda"] = "auto"  # peft backend only (unsloth is CUDA-only)
    num_threads: int | None = None  # torch CPU threads (None = torch's default)
    model: FinetuneModelSettings = field(default_factory=FinetuneModelSettings)
    lora: FinetuneLoraSettings = field(default_factory=FinetuneLoraSettings)
    data: FinetuneDataSettings = field(default_factory=FinetuneDataSettings)
    train: FinetuneTrainSettings = field(default_factory=FinetuneTrainSettings)
    # unsloth's collator masks everything before the last response_part (the assistant turn header of the template)
    instruction_part: str = "<start_of_turn>user\n"
    response_part: str = "<start_of_turn>model\n"
    resume: bool = True  # continue from the newest complete checkpoint-<step> under checkpoints/<run>/

    def __post_init__(self) -> None:
        lora = self.lora
        if not (lora.finetune_vision_layers or lora.finetune_language_layers):
            raise ConfigError("lora: finetune_vision_layers and finetune_language_layers are both false; enable one")
        if not (lora.finetune_attention_modules or lora.finetune_mlp_modules):
            raise ConfigError("lora: finetune_attention_modules and finetune_mlp_modules are both false; enable one")
        if self.data.reminder == "generated" and self.data.source != "generated":
            raise ConfigError("data.reminder=generated needs data.source=generated (the gen_reason records.jsonl); "
                              "with data.source=visdial use data.reminder=retrieved or none")
        if self.data.source == "generated" and self.data.reminder == "retrieved":
            raise ConfigError("data.source=generated carries its own reminders: use data.reminder=generated "
                              "(keep them) or none (answer only)")
        if self.train.max_steps == 0 and self.train.epochs <= 0:
            raise ConfigError("train.max_steps=0 needs train.epochs > 0")


@dataclass
class FinetuneInferConfig:
    """Answers from a fine-tuned adapter: one image + conversation, or every selected round of a split."""

    run: str = "gemma3_reminder"  # reads checkpoints/<run>/ (adapter + training config), writes outputs/<run>/
    outputs_root: str = "outputs"
    checkpoints_root: str = "checkpoints"
    adapter: str | None = None  # adapter folder; default checkpoints/<run>; "none" = the base model alone
    base_model: str | None = None  # default: model.path of the training config saved with the adapter
    load_in_4bit: bool | None = None  # None = as trained
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto = as trained (float32 on CPU)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = None
    # single example: both set (CLI: image=path/to.png conversation='Q: ...\nA: ...\nQ: ...\nA:')
    image: str | None = None
    conversation: str | None = None
    # batch over a split (when image/conversation are unset)
    dialogs: str = "data/demo/val.json"
    images: str = "data/demo/images"
    rounds: Literal["all", "memory", "current", "last"] = "all"
    limit_dialogs: int | None = None
    out: str | None = None  # default outputs/<run>/predictions.jsonl
    batch_size: int = 4
    max_new_tokens: int = 96  # the reminder block comes first, so leave room for it
    resume: bool = True  # skip (image_id, round_id) pairs already written

    def __post_init__(self) -> None:
        if (self.image is None) != (self.conversation is None):
            raise ConfigError("single-example inference needs both image=... and conversation=...; "
                              "leave both unset to predict over a split")


JOBS: dict[str, type] = {"finetune": FinetuneConfig, "finetune-infer": FinetuneInferConfig}
