"""Settings of the `chat` verb: an interactive Gradio demo over a trained bridge run or a fine-tuned Gemma-3 adapter.

Imports nothing heavy (no torch, no gradio), so configs/train/chat_demo.yaml validates from any environment.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError
from shared.errors import InputError
from shared.settings import DeviceSettings, RunSettings


class ChatError(InputError):
    """The chat cannot start: no trained run, missing inputs, an encoder it cannot repeat (one line, exit 2)."""


@dataclass
class BridgeChatSettings:
    """The bridge run to talk to (model=bridge): <outputs_root>/<run>/checkpoints and its training config."""

    checkpoint: str | None = None  # a step folder; null = the one the run's latest.json names
    reminder: Literal["train", "none", "retrieved"] = "train"  # reminder block in the prompt; train = as trained
    max_new_tokens: int = 8  # streamed answer length (the demo's answers are one or two words)
    # ranking mode: the answer options of this VisDial-format split are scored every turn (their log-probs, the top
    # ones shown); null = no ranking. The demo's 13 answers (colours, shapes, yes/no) come from data/demo/train.json.
    candidates: str | None = "data/demo/train.json"
    max_candidates: int = 500  # more distinct options than this is an error (each costs a short LLM forward)
    # the shards the bridge was trained on: their header gives the encoder and its preprocessing, which the chat
    # repeats exactly for each new picture and question; null = the training config's data.embeddings
    embeddings: str | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.max_candidates < 1:
            raise ConfigError(f"bridge.max_new_tokens={self.max_new_tokens}, bridge.max_candidates="
                              f"{self.max_candidates}", fix="give both >= 1")


@dataclass
class GemmaChatSettings:
    """The fine-tuned Gemma-3 adapter to talk to (model=gemma), loaded as `finetune-infer` loads it."""

    adapter: str | None = None  # adapter folder; null = <outputs_root>/<run>/adapter; "none" = the base model alone
    base_model: str | None = None  # null = model.path of the training config saved with the adapter
    load_in_4bit: bool | None = None  # null = as trained
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto = as trained (float32 on CPU)
    max_new_tokens: int = 96  # the model writes its <reminder> block first, so leave room for it

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"gemma.max_new_tokens={self.max_new_tokens}: must be >= 1", fix="give it >= 1")


@dataclass
class ChatConfig(DeviceSettings, RunSettings):
    """A chat in the browser with a trained run: add pictures, ask questions, watch the memory. Served on
    127.0.0.1 only, with analytics and every outside call off; nothing is written to the run."""

    model: Literal["bridge", "gemma"] = "bridge"  # bridge: an MA-LMM bridge run; gemma: a fine-tuned adapter
    bridge: BridgeChatSettings = field(default_factory=BridgeChatSettings)
    gemma: GemmaChatSettings = field(default_factory=GemmaChatSettings)
    images: str | None = "data/demo/images"  # demo pictures offered beside the upload box; null = upload only
    gallery_size: int = 12  # how many demo pictures the gallery offers (the first ones by image id)
    reminder_top_k: int | None = None  # memories shown in the panel; null = the run's own top-k
    port: int = 7860  # on 127.0.0.1; 0 = a free port (printed)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port={self.port}: not a TCP port", fix="give 1..65535, or 0 for a free one")
        if self.gallery_size < 0:
            raise ConfigError(f"gallery_size={self.gallery_size}: must be >= 0", fix="give 0 for no gallery")
        if self.reminder_top_k is not None and self.reminder_top_k < 1:
            raise ConfigError(f"reminder_top_k={self.reminder_top_k}: must be >= 1",
                              fix="give a count, or null for the run's own top-k")
