"""The `hf` backend for real: a tiny random LlamaForCausalLM saved to disk, loaded by path, generating new tokens.

The tokenizer is the converted SmolLM2's (chat template path) when checkpoints/smollm2-135m-instruct exists, else a
byte-level BPE trained here on the test's texts (plain prompt path); both variants run when possible.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.generate.backends import GenerationError, Request
from services.generate.run import make_backend, run
from services.generate.schema import check_record
from tests.demo_artifacts import smollm2
from tests.unit.generate.conftest import DIALOGS, ROUNDS, make_config

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    texts = [q for d in DIALOGS for q, *_ in d["rounds"]] + ["Dialogue so far: Answer the last question."]
    tk.train_from_iterator(texts * 20, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<pad>", "<eos>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


@pytest.fixture(params=[pytest.param("smollm2", marks=pytest.mark.slow), "bpe"])  # smollm2: built once, ~30 s
def tiny_lm(request, tmp_path) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if request.param == "smollm2":
        tok = AutoTokenizer.from_pretrained(smollm2(), local_files_only=True)  # built like make checkpoints-demo
    else:
        tok = _bpe_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    folder = tmp_path / f"tiny-{request.param}"
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_hf_gen_base_writes_valid_records_of_new_tokens_only(dataset, tmp_path, tiny_lm):
    cfg = make_config(dataset, tmp_path / "out", kind="hf", model=str(tiny_lm), max_new_tokens=6)
    summary = run("gen_base", cfg)
    assert summary.written == ROUNDS and summary.skipped == 0
    lines = (tmp_path / "out/gen/records.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [check_record(r) for r in records] == [None] * ROUNDS
    backend = make_backend(cfg.backend)
    vocab = backend.tokenizer.batch_decode([[i] for i in range(len(backend.tokenizer))])
    longest_token = max(len(t) for t in vocab)
    for record in records:
        assert record["backend"] == "hf" and record["model"] == str(tiny_lm) and record["images"] == []
        assert record["config_hash"] == cfg.record_hash()
        # 6 new tokens at most: the prompt (hundreds of characters) was not decoded back into the response
        assert len(record["response"]) <= 6 * longest_token
        assert "Caption:" not in record["response"] and cfg.prompt.system[:20] not in record["response"]
        assert record["reference"] not in record["conversation"]
    request = Request(cfg.prompt.system, records[-1]["conversation"])
    assert backend.generate(request) == backend.generate(request)  # seeded: a resumed run regenerates the same
    assert (tmp_path / "out/gen/config.yaml").is_file()


def test_hf_gen_reason_rejects_responses_without_a_reminder(dataset, tmp_path, tiny_lm):
    cfg = make_config(dataset, tmp_path / "out", kind="hf", model=str(tiny_lm), max_new_tokens=4)
    cfg.retrieval.enabled = True
    cfg.prompt.user = "{reminder}\n{conversation}"
    summary = run("gen_reason", cfg)  # a random model never writes a <reminder> block
    assert summary.written == 0 and sum(summary.rejected.values()) == ROUNDS
    rejects = [json.loads(x) for x in (tmp_path / "out/gen/rejects.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejects} <= {"no <reminder> block", "text before the <reminder> block (the block "
                                              "must come first)", "<reminder> block is never closed"}
    again = run("gen_reason", cfg)  # rejected ids count as done unless validation.retry_rejected
    assert again.skipped == ROUNDS and again.attempts == 0


def test_hf_backend_names_a_missing_model_folder(tmp_path):
    cfg = make_config(tmp_path, tmp_path / "out", kind="hf", model=str(tmp_path / "nowhere"))
    with pytest.raises(GenerationError, match="no transformers model folder.*make checkpoints-demo"):
        make_backend(cfg.backend)
