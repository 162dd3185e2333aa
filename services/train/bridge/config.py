"""Settings of the bridge's verbs `bridge` (training) and `infer` (answers + option ranking).

Imports nothing heavy, so every shipped YAML validates from any environment. Run identity, locations, device,
optimiser and LoRA basics are the shared classes of shared/settings.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from shared.config import ConfigError
from shared.memory import GateConfig, MemoryConfig
from shared.settings import (CheckpointSettings, DeviceSettings, DialogSelection, LoraSettings, OptimSettings,
                             RunSettings)


# What model.trainable may name ("auto" adds the Q-Former when it is not pretrained); services/train/bridge/model.py.
TRAINABLE_PARTS = ("fc", "turn_pe", "query_tokens", "llm_proj", "qformer", "auto")


@dataclass
class BridgeLoraSettings(LoraSettings):
    """Optional LoRA adapters on the LLM (peft)."""

    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])  # module names in the LLM


@dataclass
class LLMSettings:
    """Any causal-LM directory (safetensors + tokenizer); `nf4` loads it 4-bit with bitsandbytes (CPU works too)."""
    path: str = "checkpoints/smollm2-135m-instruct"
    quantization: Literal["none", "nf4"] = "none"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights when `none`, compute dtype when `nf4`
    lora: BridgeLoraSettings = field(default_factory=BridgeLoraSettings)


@dataclass
class QFormerSettings:
    """transformers' BLIP-2 Q-Former; `checkpoint` = a BLIP-2/InstructBLIP model dir to initialise it from."""
    checkpoint: str | None = None
    num_query_tokens: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_frequency: int = 2
    dropout: float = 0.1


@dataclass
class BridgeModelSettings:
    """The MA-LMM bridge: turn tokens -> memory banks -> Q-Former -> llm_proj -> soft tokens of the LLM."""
    dim: int = 1024  # width of the turn tokens = the Q-Former's encoder_hidden_size
    tokens_per_turn: int = 1  # fc emits tokens_per_turn x dim per turn (memory compression is per token position)
    input_norm: bool = True  # LayerNorm (no affine) on each embedding before fc: encoders differ in scale by 25x
    max_turns: int = 10  # turn_pe has max_turns + 1 rows (row t = 1-based turn t)
    # > 0: a learned embedding of which picture a turn shows (1-based, in order of first appearance) joins turn_pe, so
    # "the first picture" is addressable in the memory bank; 0 = none (a VisDial dialog shows one picture)
    max_pictures: int = 0
    memory_bank_length: int = 10  # past-turn slots kept in the visual memory bank; 0 = only the current turn
    query_memory_bank: bool = False  # past Q-Former states as extra keys/values of its self-attention
    qformer: QFormerSettings = field(default_factory=QFormerSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    # parts to train: fc (with its LayerNorm), turn_pe, query_tokens, llm_proj, qformer; "auto" adds the Q-Former
    # when it is not initialised from a checkpoint. LoRA adapters train when llm.lora.enabled.
    trainable: list[str] = field(default_factory=lambda: ["fc", "turn_pe", "query_tokens", "llm_proj", "auto"])

    def __post_init__(self) -> None:
        unknown = sorted(set(self.trainable) - set(TRAINABLE_PARTS))
        if unknown:
            raise ConfigError(f"model.trainable: unknown parts {unknown}",
                              fix=f"choose from {', '.join(TRAINABLE_PARTS)}")
        for name in ("dim", "tokens_per_turn", "max_turns"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}={getattr(self, name)}: must be >= 1", fix=f"give model.{name} >= 1")
        if self.memory_bank_length < 0 or self.max_pictures < 0:
            raise ConfigError(f"model.memory_bank_length={self.memory_bank_length}, model.max_pictures="
                              f"{self.max_pictures}", fix="give both >= 0 (0 = off)")


@dataclass
class PromptSettings:
    """LLM prompt = `prefix` + [soft tokens] + optional <reminder> block + `template` with the question; the target
    is `answer_prefix` + the ground-truth answer + EOS. A chat model reads the soft tokens far better inside its own
    turn format, e.g. prefix "<|im_start|>user\n", template "{question}<|im_end|>\n<|im_start|>assistant\n"."""
    prefix: str = ""  # text between BOS and the soft tokens
    template: str = "Q: {question}\nA:"
    answer_prefix: str = " "  # text before the answer (targets and scored options alike)
    # none; retrieved = a <reminder> of the top-k earlier rounds in every prompt; gated = only where `gate` says the
    # question needs the past (shared.memory.memory_needed; docs/RETRIEVAL.md "The reminder gate")
    reminder: Literal["none", "retrieved", "gated"] = "none"
    reminder_top_k: int = 3
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # recency/frequency/saliency/relevance weights
    gate: GateConfig = field(default_factory=GateConfig)  # when `gated` lets a reminder in
    max_prompt_tokens: int = 64  # longer prompts are cut from the left of the reminder, never the question
    max_answer_tokens: int = 16
    add_bos: bool = True


@dataclass
class BridgeDataSettings(DialogSelection):
    """Dialogs (a VisDial-format split) and their embedding shards."""

    embeddings: str = "embeddings/cpu_default/train"  # the split's shard folder (services.extract)
    encoder_id: str | None = "cpu_default"  # checked against the shards' metadata; null accepts any
    # once: hash each shard the first time it is read (recorded beside it); always: every time; never: headers only
    verify: Literal["once", "always", "never"] = "once"
    # each epoch lists a round whose `kind` is "memory" this many times: memory rounds are ~10% of the demo's rounds,
    # too few for a scratch Q-Former to learn to address an earlier picture in a CPU-sized run (VisDial has no kinds)
    repeat_memory_rounds: int = 1

    moved_keys: ClassVar[dict[str, str]] = {"verify_checksums": "use data.verify=once|always|never (once is the "
                                                                "default: every shard is hashed the first time)"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.repeat_memory_rounds < 1:
            raise ConfigError(f"data.repeat_memory_rounds={self.repeat_memory_rounds}: must be >= 1",
                              fix="1 lists every round once")


@dataclass
class BridgeOptimSettings(OptimSettings):
    """AdamW with linear warm-up and cosine decay."""

    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps


@dataclass
class BridgeTrainConfig(CheckpointSettings, DeviceSettings, RunSettings):
    """Training of the MA-LMM bridge: <outputs_root>/<run>/ gets config.yaml, metrics.jsonl, loss.png and the
    checkpoints (checkpoints/step-*/, latest.json)."""

    seed: int = 0
    data: BridgeDataSettings = field(default_factory=BridgeDataSettings)
    model: BridgeModelSettings = field(default_factory=BridgeModelSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    optim: BridgeOptimSettings = field(default_factory=BridgeOptimSettings)


@dataclass
class InferConfig(DeviceSettings, RunSettings):
    """Answers and option ranking with a trained bridge: reads the run's checkpoints and training config, writes
    <outputs_root>/<run>/predictions.jsonl (resumable: rows already written are kept)."""

    checkpoint: str | None = None  # a step folder; null = the one the run's latest.json names
    out: str | None = None  # null = <outputs_root>/<run>/predictions.jsonl
    data: BridgeDataSettings = field(default_factory=lambda: BridgeDataSettings(
        dialogs="data/demo/val.json", embeddings="embeddings/cpu_default/val"))
    # "train" = as the bridge was trained; with gated, each row records whether the gate fired ("gate": true/false)
    reminder: Literal["train", "none", "retrieved", "gated"] = "train"
    max_new_tokens: int = 8
    score_options: bool = True
    score_with_eos: bool = True  # an option's score includes the end-of-answer token
    batch_size: int = 16  # rounds per prefix forward
    option_batch_size: int = 256  # (round, option) rows per option forward

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_new_tokens", "batch_size", "option_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1", fix=f"give {name} >= 1")
