"""Over-long records are refused before training, image tokens counted (unsloth's collator would cut them silently)."""
from __future__ import annotations

import pytest

from services.train.finetune import train as finetune_train
from services.train.finetune.collate import ResponseOnlyCollator, check_lengths, load_image, token_lengths
from services.train.finetune.config import FinetuneConfig
from services.train.finetune.records import RecordError, build_messages, instruction_for, records_from_visdial
from services.train.finetune.tiny import MM_TOKENS, build_processor, build_tiny_gemma3
from shared.config import load_config
from tests.unit.train.test_finetune_data import write_split

INSTRUCTION = instruction_for("retrieved", None)


@pytest.fixture(scope="module")
def processor():
    return build_processor()


@pytest.fixture
def records(tmp_path):
    return records_from_visdial(*write_split(tmp_path), reminder="retrieved")


def test_lengths_equal_what_the_processor_makes_of_text_and_image(processor, records):
    """The count is exactly the processor's own (the input unsloth's collator gets), image tokens included."""
    counted = token_lengths(processor, records, INSTRUCTION)
    for record, n in zip(records, counted):
        image = load_image(record.image_path)
        text = processor.apply_chat_template(build_messages(record, image, INSTRUCTION), tokenize=False)
        ids = processor(text=[text], images=[[image]], add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        assert n == len(ids)
        soft = processor.tokenizer.convert_tokens_to_ids("<image_soft_token>")
        assert int((ids == soft).sum()) == MM_TOKENS
    # the peft collator builds the same sequence (prompt through the processor + response tokens)
    collator = ResponseOnlyCollator(processor, INSTRUCTION, max_seq_length=4096)
    assert [len(collator.encode(r)["input_ids"]) for r in records] == counted


def test_one_token_over_the_limit_is_an_error_naming_the_record(processor, records):
    counted = token_lengths(processor, records, INSTRUCTION)
    longest = max(counted)
    assert check_lengths(processor, records, INSTRUCTION, longest) == longest
    worst = records[counted.index(longest)]
    with pytest.raises(RecordError, match=rf"1 record\(s\) longer than model.max_seq_length={longest - 1} .*"
                                          rf"record {worst.image_id}/{worst.round_id}: {longest} tokens"):
        check_lengths(processor, records, INSTRUCTION, longest - 1)


@pytest.mark.slow
def test_finetune_refuses_long_records_before_loading_the_model(tmp_path, monkeypatch):
    """`finetune` checks every record first, for both backends: no model is loaded, no step runs."""
    from services.train.finetune import peft_backend

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although a record is too long")

    monkeypatch.setattr(peft_backend, "build_trainer", no_model)
    dialogs, images = write_split(tmp_path)
    model = build_tiny_gemma3(tmp_path / "tiny")
    cfg = load_config(FinetuneConfig, None, [
        f"outputs_root={tmp_path / 'out'}", "backend=peft", "device=cpu", f"model.path={model}",
        "model.max_seq_length=60", f"data.dialogs={dialogs}", f"data.images={images}"])
    with pytest.raises(RecordError, match=r"record\(s\) longer than model.max_seq_length=60"):
        finetune_train.run(cfg)
