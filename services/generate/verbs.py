"""The generate service's verbs (`python -m services.generate <verb> --config FILE key=value ...`; shared/cli.py).

Generation runs in the train environment (it needs transformers for the local backend), as its own service.
"""
from __future__ import annotations

from services.generate.config import GenerateConfig
from shared.cli import Verb

VERBS = {
    "gen-base": Verb(GenerateConfig, "services.generate.run:gen_base",
                     "training records whose response is the short final answer (Ollama / OpenAI-compatible / hf)"),
    "gen-reason": Verb(GenerateConfig, "services.generate.run:gen_reason",
                       "training records whose response is a <reminder> block, then the short answer (validated)"),
    "gen-eval": Verb(GenerateConfig, "services.generate.run:gen_eval",
                     "zero-shot predictions.jsonl over a split, reminder blocks stripped from the answer"),
}
RENAMED = {"gen_base": "gen-base", "gen_reason": "gen-reason", "gen_eval": "gen-eval"}
