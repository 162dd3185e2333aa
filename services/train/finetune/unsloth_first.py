"""Importing unsloth before transformers, peft and trl: the first thing the unsloth backend does in a process.

unsloth patches those three libraries when it is imported; any of them imported earlier runs unpatched (unsloth's
own warning: "may run slower or encounter memory issues"). So this module imports nothing but the standard library
and torch, and `finetune` calls `import_unsloth()` before anything that loads transformers (the trainer helpers, the
collators). It refuses, naming the modules, when one of them is already loaded, instead of training unpatched.
"""
from __future__ import annotations

import sys

# The modules unsloth patches on import (unsloth/_gpu_init.py: critical_modules)
PATCHED_BY_UNSLOTH = ("trl", "transformers", "peft")


class UnslothUnavailable(RuntimeError):
    """backend=unsloth cannot run in this process (no GPU, not installed, or imported too late)."""


def import_unsloth():
    """(FastVisionModel, UnslothVisionDataCollator), importing unsloth first if this process has not yet."""
    if "unsloth" not in sys.modules:
        import torch

        if not torch.cuda.is_available():
            raise UnslothUnavailable("backend=unsloth needs a CUDA GPU (torch sees none); use backend=peft or "
                                     "backend=auto")
        early = [name for name in PATCHED_BY_UNSLOTH if name in sys.modules]
        if early:
            raise UnslothUnavailable(f"backend=unsloth: {', '.join(early)} already imported in this process, so "
                                     "unsloth could not patch it; import services.train.finetune.unsloth_first and "
                                     "call import_unsloth() before anything that loads them")
    try:
        from unsloth import FastVisionModel  # noqa: I001  (patches transformers, peft and trl)
        from unsloth.trainer import UnslothVisionDataCollator
    except ImportError as e:
        raise UnslothUnavailable(f"backend=unsloth: cannot import unsloth ({e}); install "
                                 "docker/requirements/train.nodeps.txt or use backend=peft") from None
    return FastVisionModel, UnslothVisionDataCollator
