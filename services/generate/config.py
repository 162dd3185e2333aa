"""Settings of the data-generation verbs gen-base, gen-reason and gen-eval (no heavy imports here).

One `GenerateConfig` serves the three verbs; the verb decides what a record is (docs in services/generate/README.md):
gen-base writes a short final answer, gen-reason a `<reminder>` block followed by the short answer (validated),
gen-eval writes `predictions.jsonl` (shared/predictions.py) with the blocks stripped from the answer.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from shared.config import ConfigError, config_hash
from shared.memory import GateConfig, MemoryConfig
from shared.settings import DialogSelection, RunSettings, location_keys


@dataclass
class DataConfig(DialogSelection):
    """The dialogs to generate for; record ids carry the split name the file declares."""

    images: str = "data/demo/images"  # scanned by shared.images.ImageIndex (only when images are sent)
    caption: bool = True  # put the dataset caption at the top of the conversation

    moved_keys: ClassVar[dict[str, str]] = {
        "dataset": "give the split's file itself: data.dialogs=data/demo/val.json",
        "split": "give the split's file itself: data.dialogs=data/demo/val.json",
        "image_root": "it is data.images now", "max_dialogs": "it is data.limit_dialogs now (null = every dialog)"}


@dataclass
class BackendConfig:
    kind: Literal["ollama", "openai", "hf"] = "hf"
    model: str = "checkpoints/smollm2-135m-instruct"  # ollama tag, OpenAI model name, or a local HF model folder
    base_url: str = ""  # ollama: http://127.0.0.1:11434; openai: e.g. https://api.openai.com/v1 ("" = default)
    api_key_env: str = ""  # NAME of the environment variable holding the key ("" = no key); never the key itself
    timeout_s: float = 120.0
    max_retries: int = 4  # retries after the first try, on 429/5xx/connection errors only
    backoff_s: float = 1.0  # wait before the first retry; doubles each time (with jitter)
    max_new_tokens: int = 160
    temperature: float = 0.0
    seed: int = 0
    images: Literal["none", "current", "all_shown"] = "all_shown"  # ignored by hf (text-only, see README)
    device: str = "cpu"  # hf only
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # hf only


@dataclass
class PromptConfig:
    system: str = "You answer questions about a picture in a short phrase."
    # Placeholders: {conversation} (shared.dialog_text), {reminder} (retrieved memories or ""), {question}.
    user: str = "{reminder}\n{conversation}"


@dataclass
class RetrievalConfig:
    enabled: bool = False  # give the LLM the top-k retrieved memories as a <reminder> block in the prompt
    k: int = 3
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    # true: the block only in rounds whose question needs the past (shared.memory.memory_needed with `gate`),
    # {reminder} is "" elsewhere (docs/RETRIEVAL.md, "The reminder gate")
    gated: bool = False
    gate: GateConfig = field(default_factory=GateConfig)
    # e.g. embeddings/cpu_default/{split} ({split}: the split the data file declares): cosine relevance;
    # null = lexical relevance
    embeddings: str | None = None
    idf_from: str | None = None  # VisDial JSON whose Q/A texts give the saliency IDF (null = the store's own turns)


@dataclass
class ValidationConfig:
    max_answer_words: int = 25  # gen-reason: the answer after the reminder block must be this short
    require_reminder: bool = True  # gen-reason: a closed <reminder>...</reminder> before the answer
    retry_rejected: bool = False  # on resume, generate rejected ids again (useful with temperature > 0)


@dataclass
class GenerateConfig(RunSettings):
    """One generation job; its files go to <outputs_root>/<run>/ (config.yaml, records/rejects or predictions)."""

    run: str = "gen-reason"
    data: DataConfig = field(default_factory=DataConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    max_records: int | None = None  # stop after this many generations, written or rejected (null = no limit)
    log_every: int = 20

    moved_keys: ClassVar[dict[str, str]] = {**RunSettings.moved_keys,
                                            "out_dir": "outputs go to <outputs_root>/<run>/: set run=<name>"}
    LOCATION_KEYS: ClassVar[tuple[str, ...]] = ("max_records", "log_every")

    def __post_init__(self) -> None:
        super().__post_init__()
        key_env = self.backend.api_key_env
        if key_env and not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,63}", key_env):
            # never echoed: a value that is not a variable name is most likely the key itself, pasted by mistake
            raise ConfigError("backend.api_key_env is not the upper-case NAME of an environment variable (the value is "
                              "not shown: it may be the key itself)", fix="export the key in your shell, e.g. "
                              "`export OPENAI_API_KEY=...`, and give its name: backend.api_key_env=OPENAI_API_KEY")
        if self.max_records is not None and self.max_records < 1:
            raise ConfigError(f"max_records={self.max_records}: must be >= 1", fix="give >= 1, or null for no limit")
        b = self.backend
        if self.log_every < 1 or b.max_new_tokens < 1 or b.timeout_s <= 0 or b.temperature < 0:
            raise ConfigError(f"log_every={self.log_every}, backend.max_new_tokens={b.max_new_tokens}, backend."
                              f"timeout_s={b.timeout_s}, backend.temperature={b.temperature}",
                              fix="log_every and max_new_tokens >= 1, timeout_s > 0, temperature >= 0")
        if self.retrieval.k < 1:
            raise ConfigError(f"retrieval.k={self.retrieval.k}: must be >= 1")
        if self.backend.max_retries < 0 or self.backend.backoff_s < 0:
            raise ConfigError("backend.max_retries and backend.backoff_s must be >= 0")
        for name in ("{conversation}",):
            if name not in self.prompt.user:
                raise ConfigError(f"prompt.user must contain {name}; it is where the dialog goes")
        if self.retrieval.enabled and "{reminder}" not in self.prompt.user:
            raise ConfigError("retrieval.enabled needs {reminder} in prompt.user, or the memories go nowhere")

    def record_hash(self) -> str:
        """config_hash of what decides a record: locations and run control (resume, max_records, ...) left out, so a
        resumed or moved run still matches."""
        neutral = {key: getattr(GenerateConfig(), key) for key in location_keys(self)}
        return config_hash(dataclasses.replace(self, **neutral))

