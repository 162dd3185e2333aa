"""Records -> model inputs with the loss on the response only (the peft backend's collator), and prompt encoding.

The prompt (chat template up to the assistant header, with the image) is encoded by the processor exactly as at
inference; the response text (what the template puts after that header, end-of-turn marker included) is tokenised
on its own and appended. So the label mask is exact — -100 on the prompt, the image tokens and the padding — and
the model is trained on the very token boundary it continues from when generating.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from services.train.finetune.records import FinetuneRecord, RecordError, build_messages

IGNORE = -100


def load_image(path: str | Path):
    """An RGB PIL image; unreadable files raise RecordError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise RecordError(f"{path}: cannot read the image ({e}); re-create it (`make data-demo`) or fix the "
                          "images folder") from None


class RecordDataset(Dataset):
    """Records as a map-style dataset; images are decoded in the collator (or the unsloth messages view)."""

    def __init__(self, records: list[FinetuneRecord]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> FinetuneRecord:
        return self.records[i]


class MessagesDataset(RecordDataset):
    """The unsloth/TRL view: `{"messages": [user(image, text), assistant(response)]}` with the PIL image inside."""

    def __init__(self, records: list[FinetuneRecord], instruction: str):
        super().__init__(records)
        self.instruction = instruction

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        return {"messages": build_messages(record, load_image(record.image_path), self.instruction)}


def prompt_text(processor, record: FinetuneRecord, image, instruction: str) -> str:
    messages = build_messages(record, image, instruction, with_response=False)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class ResponseOnlyCollator:
    """Pads a batch of records into input_ids / attention_mask / token_type_ids / pixel_values / labels."""

    def __init__(self, processor, instruction: str, max_seq_length: int):
        self.processor, self.instruction, self.max_seq_length = processor, instruction, max_seq_length
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            raise ValueError("the tokenizer has no pad token; set one in the model folder's tokenizer_config.json")

    def encode(self, record: FinetuneRecord) -> dict[str, torch.Tensor]:
        image = load_image(record.image_path)
        prompt = prompt_text(self.processor, record, image, self.instruction)
        full = self.processor.apply_chat_template(build_messages(record, image, self.instruction), tokenize=False)
        if not full.startswith(prompt):
            raise RecordError(f"record {record.image_id}/{record.round_id}: the chat template does not render the "
                              "prompt as a prefix of prompt + response; use a template with add_generation_prompt")
        # The template adds the BOS itself: no second one from the tokenizer.
        encoded = self.processor(text=[prompt], images=[[image]], return_tensors="pt", add_special_tokens=False)
        response = self.tokenizer(full[len(prompt):], add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        prompt_ids = encoded["input_ids"][0]
        ids = torch.cat([prompt_ids, response])
        if len(ids) > self.max_seq_length:
            raise RecordError(f"record {record.image_id}/{record.round_id}: {len(ids)} tokens > train.max_seq_length="
                              f"{self.max_seq_length}; raise it, or shorten the conversation (data.caption=false)")
        labels = torch.cat([torch.full_like(prompt_ids, IGNORE), response])
        item = {"input_ids": ids, "labels": labels, "pixel_values": encoded["pixel_values"]}
        if "token_type_ids" in encoded:  # Gemma-3 marks image tokens (bidirectional attention among them)
            item["token_type_ids"] = torch.cat([encoded["token_type_ids"][0], torch.zeros_like(response)])
        return item

    def __call__(self, records: list[FinetuneRecord]) -> dict[str, torch.Tensor]:
        items = [self.encode(r) for r in records]
        width = max(len(item["input_ids"]) for item in items)

        def pad(key: str, value: int) -> torch.Tensor:
            out = torch.full((len(items), width), value, dtype=torch.long)
            for row, item in enumerate(items):
                out[row, : len(item[key])] = item[key]
            return out

        batch = {"input_ids": pad("input_ids", self.pad_id), "labels": pad("labels", IGNORE),
                 "attention_mask": torch.zeros(len(items), width, dtype=torch.long),
                 "pixel_values": torch.cat([item["pixel_values"] for item in items])}
        for row, item in enumerate(items):
            batch["attention_mask"][row, : len(item["input_ids"])] = 1
        if all("token_type_ids" in item for item in items):
            batch["token_type_ids"] = pad("token_type_ids", 0)
        return batch
