"""Settings of `python -m services.train rank-text` (light: no torch; every shipped YAML validates anywhere)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError
from shared.memory import GateConfig, MemoryConfig
from shared.settings import DeviceSettings, DialogSelection, RunSettings

# What each condition puts before the open question (the caption always stands in for the picture).
CONDITIONS = ("none", "caption", "full", "window", "reminder", "gated")
CONDITION_HELP = {
    "none": "the question only",
    "caption": "caption + question",
    "full": "caption + every earlier Q/A + question",
    "window": "caption + the last `window` Q/A + question",
    "reminder": "caption + a <reminder> block of the top `reminder_k` earlier turns (shared.memory retrieval) + question",
    "gated": "as reminder where the gate says the question needs the past (shared.memory.memory_needed), else as caption",
}


@dataclass
class RankTextData(DialogSelection):
    """The VisDial-format split to rank (every round needs its 100 answer options)."""

    dialogs: str = "tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json"  # 50 real val dialogs
    image_ids: list[int] | None = None  # rank only these dialogs, in this order (null: every dialog of the split)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds not in ("all", "last"):
            raise ConfigError(f"data.rounds={self.rounds}: VisDial rounds carry no memory/current kind",
                              fix="use data.rounds=all or data.rounds=last")
        if self.image_ids is not None and len(set(self.image_ids)) != len(self.image_ids):
            raise ConfigError("data.image_ids: an image id is listed twice", fix="list every dialog once")


@dataclass
class TextLMSettings:
    """A local causal-LM folder (safetensors + tokenizer), e.g. from `prepare-weights` or a Hugging Face download."""

    path: str = "checkpoints/smollm2-135m-instruct"
    # float32 for every reported figure; bfloat16 is the FAST option (3-4x on CPU) that moves some ranks: 11-15 of 50
    # ground-truth ranks changed by 1-2 places in docs/HISTORY.md's check
    dtype: Literal["float32", "bfloat16"] = "float32"
    # what ends every option after " <answer>": the tokenizer's EOS (chat models, SmolLM2-Instruct) or a newline
    # (base models such as Gemma-3-270M, which end a line, not a turn)
    option_end: Literal["eos", "newline"] = "eos"
    rows_per_forward: int = 512  # option-trie nodes per forward (memory bound: nodes x vocabulary floats)

    def __post_init__(self) -> None:
        if self.rows_per_forward < 1:
            raise ConfigError(f"lm.rows_per_forward={self.rows_per_forward}: must be >= 1", fix="give a count >= 1")


@dataclass
class RankPromptSettings:
    """How each memory condition builds the text before `Q: <question>\\nA:`."""

    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))  # run in this order, each its own folder
    window: int = 3  # earlier turns shown by `window` (the most recent ones)
    reminder_k: int = 3  # memories in a `reminder` block (fewer while fewer turns exist)
    reminder_order: Literal["score", "turn"] = "turn"  # list memories by retrieval score or in conversation order
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # retrieval weights (shared.memory)
    # when `gated` lets the reminder in; pronouns on: VisDial refers back with he/she/they, almost never explicitly
    # (the default rules alone fire on 0 of the 500 bundled val rounds)
    gate: GateConfig = field(default_factory=lambda: GateConfig(pronouns=True))

    def __post_init__(self) -> None:
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown or not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ConfigError(f"prompt.conditions={self.conditions}: each once, from {', '.join(CONDITIONS)}",
                              fix="e.g. prompt.conditions=[none,caption,full,reminder]")
        for name in ("window", "reminder_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"prompt.{name}={getattr(self, name)}: must be >= 1", fix=f"give prompt.{name} >= 1")


@dataclass
class RankTextConfig(DeviceSettings, RunSettings):
    """Rank every round's candidate answers by summed log-prob under a text-only LM, once per memory condition:
    <outputs_root>/<run>/<condition>/predictions.jsonl (resumable), context.json (prompt tokens per condition) and
    summary.md. Text only: the dialog's caption stands in for the picture."""

    run: str = "history_smollm2"
    data: RankTextData = field(default_factory=RankTextData)
    lm: TextLMSettings = field(default_factory=TextLMSettings)
    prompt: RankPromptSettings = field(default_factory=RankPromptSettings)
