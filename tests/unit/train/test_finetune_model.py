"""The peft backend's pieces on a tiny random Gemma-3: LoRA targets from the four switches, the response-only labels."""
from __future__ import annotations

import re

import pytest
import torch

from services.train.finetune.collate import IGNORE, ResponseOnlyCollator
from services.train.finetune.config import FinetuneLoraSettings
from services.train.finetune.model import lora_target_regex
from services.train.finetune.records import RecordError, instruction_for, records_from_visdial
from services.train.finetune.tiny import build_processor, tiny_config
from tests.unit.train.test_finetune_data import write_split


@pytest.fixture(scope="module")
def module_names():
    from transformers import Gemma3ForConditionalGeneration

    model = Gemma3ForConditionalGeneration(tiny_config(build_processor().tokenizer))
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def _targets(names: list[str], **switches) -> set[str]:
    pattern = lora_target_regex(FinetuneLoraSettings(**switches))
    return {n for n in names if re.fullmatch(pattern, n)}


def test_all_switches_cover_both_towers_attention_and_mlp(module_names):
    chosen = _targets(module_names)
    leaves = {n.rsplit(".", 1)[1] for n in chosen}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "gate_proj", "up_proj", "down_proj",
                      "fc1", "fc2"}
    assert any("vision_tower" in n for n in chosen) and any("language_model" in n for n in chosen)
    # never the unused pooling head of SigLIP, the projector or the output head
    assert not any(".head." in n or "multi_modal_projector" in n or n.endswith("lm_head") for n in chosen)


@pytest.mark.parametrize("switches, towers, leaves", [
    ({"finetune_vision_layers": False}, {"language_model"},
     {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    ({"finetune_language_layers": False, "finetune_mlp_modules": False}, {"vision_tower"},
     {"q_proj", "k_proj", "v_proj", "out_proj"}),
    ({"finetune_attention_modules": False}, {"vision_tower", "language_model"},
     {"fc1", "fc2", "gate_proj", "up_proj", "down_proj"}),
])
def test_each_switch_removes_its_part(module_names, switches, towers, leaves):
    chosen = _targets(module_names, **switches)
    assert {n.rsplit(".", 1)[1] for n in chosen} == leaves
    assert {t for t in ("vision_tower", "language_model") if any(t in n for n in chosen)} == towers


def test_labels_cover_the_response_only(tmp_path):
    processor = build_processor()
    records = records_from_visdial(*write_split(tmp_path), reminder="retrieved")
    collator = ResponseOnlyCollator(processor, instruction_for("retrieved", None), max_seq_length=512)
    batch = collator([records[-1], records[0]])  # a long and a short record: the short one is padded
    tok = processor.tokenizer
    for row, record in enumerate([records[-1], records[0]]):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        trained = labels[labels != IGNORE]
        assert tok.decode(trained) == record.response + "<end_of_turn>\n"
        first = int((labels != IGNORE).nonzero()[0])
        assert tok.decode(ids[:first]).endswith("A:<end_of_turn>\n<start_of_turn>model\n")  # the prompt is masked
        assert (labels[ids == processor.image_token_id] == IGNORE).all()
        assert (labels[batch["attention_mask"][row] == 0] == IGNORE).all()
    image_tokens = (batch["input_ids"] == tok.convert_tokens_to_ids("<image_soft_token>"))
    assert (batch["token_type_ids"].bool() == image_tokens).all()  # Gemma-3's image-token marks line up
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()
    assert batch["pixel_values"].shape == (2, 3, 32, 32)


def test_too_long_records_are_an_error_not_a_cut(tmp_path):
    records = records_from_visdial(*write_split(tmp_path), reminder="retrieved")
    collator = ResponseOnlyCollator(build_processor(), "", max_seq_length=40)
    with pytest.raises(RecordError, match=r"record 12/3: \d+ tokens > model.max_seq_length=40"):
        collator([records[-1]])
