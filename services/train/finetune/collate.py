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


def token_lengths(processor, records: list[FinetuneRecord], instruction: str) -> list[int]:
    """Tokens of each record's training text as the collators feed it to the model, the image tokens included.

    Gemma-3's processor replaces the image marker (boi_token) in the text by `full_image_sequence` (the marker, its
    image_seq_length soft tokens and the end marker) before tokenising; doing the same here counts exactly without
    decoding any image. With pan-and-scan (more crops, hence tokens, for some images) or a processor without that
    attribute the processor itself runs on the image.
    """
    expansion = getattr(processor, "full_image_sequence", None)
    if expansion is None or getattr(getattr(processor, "image_processor", None), "do_pan_and_scan", False):
        out = []
        for record in records:
            image = load_image(record.image_path)
            text = processor.apply_chat_template(build_messages(record, image, instruction), tokenize=False)
            encoded = processor(text=[text], images=[[image]], add_special_tokens=False, return_tensors="pt")
            out.append(int(encoded["input_ids"].shape[1]))
        return out
    texts = [processor.apply_chat_template(build_messages(record, None, instruction), tokenize=False)
             .replace(processor.boi_token, expansion) for record in records]
    tokenizer = getattr(processor, "tokenizer", processor)
    out = []
    for start in range(0, len(texts), 1024):  # batched: the fast tokenizer encodes a batch in parallel
        out += [len(ids) for ids in tokenizer(texts[start:start + 1024], add_special_tokens=False)["input_ids"]]
    return out


def check_lengths(processor, records: list[FinetuneRecord], instruction: str, max_seq_length: int) -> int:
    """The longest record's token count; RecordError naming every record over `max_seq_length`.

    unsloth's vision collator truncates longer records silently (it cuts the response, or fails deep inside the
    model when the cut falls among the image tokens), so they are refused before any training.
    """
    lengths = token_lengths(processor, records, instruction)
    too_long = [(record, n) for record, n in zip(records, lengths) if n > max_seq_length]
    if too_long:
        named = ", ".join(f"record {r.image_id}/{r.round_id}: {n} tokens" for r, n in too_long[:5])
        raise RecordError(f"{len(too_long)} record(s) longer than model.max_seq_length={max_seq_length} (image tokens "
                          f"included): {named}{', ...' if len(too_long) > 5 else ''}",
                          fix="raise model.max_seq_length, or shorten the conversations (data.caption=false, a "
                              "smaller data.reminder_top_k)")
    return max(lengths)


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
            raise RecordError(f"record {record.image_id}/{record.round_id}: {len(ids)} tokens > model.max_seq_length="
                              f"{self.max_seq_length}",
                              fix="raise it, or shorten the conversation (data.caption=false)")
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
