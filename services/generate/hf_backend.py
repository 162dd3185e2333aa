"""A local transformers causal LM as a generation backend (offline; e.g. the converted SmolLM2-135M-Instruct).

Text-only: this backend never sees pixels. What it knows of the picture is what the conversation says (the
dataset's caption when `data.caption` is on, and the earlier answers); no image description is synthesised.
Only the new tokens are decoded, never the prompt.
"""
from __future__ import annotations

from pathlib import Path

from services.generate.backends import GenerationError, Request
from services.generate.config import BackendConfig


class HFBackend:
    kind = "hf"
    accepts_images = False

    def __init__(self, cfg: BackendConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(cfg.model)
        if not (path / "config.json").is_file():
            raise GenerationError(
                f"backend.model={cfg.model!r}: no transformers model folder there (config.json missing); "
                "`make checkpoints-demo` builds checkpoints/smollm2-135m-instruct, or point at any local HF causal LM")
        self.cfg, self._torch = cfg, torch
        self.model = cfg.model  # recorded in every record
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, cfg.dtype))
        self.lm.to(cfg.device).eval()
        self._generator_seed = cfg.seed

    def _encode(self, request: Request):
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = [{"role": "system", "content": request.system}, {"role": "user", "content": request.user}]
            enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        else:  # a bare tokenizer (e.g. a test's): a plain text prompt with the same content
            enc = tok(f"{request.system}\n\n{request.user}\n", return_tensors="pt")
        return {k: v.to(self.cfg.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def generate(self, request: Request) -> str:
        torch = self._torch
        inputs = self._encode(request)
        if "attention_mask" not in inputs:
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        sample = self.cfg.temperature > 0
        torch.manual_seed(self._generator_seed)  # the same record gives the same text on a resumed run
        with torch.no_grad():
            out = self.lm.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=sample,
                                   temperature=self.cfg.temperature if sample else None, top_p=None, top_k=None,
                                   pad_token_id=pad)
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
