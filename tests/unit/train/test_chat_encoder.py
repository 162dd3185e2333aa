"""The chat embeds a picture and a question exactly as the extract service did for the shards the bridge read.

The reference is the real extract verb, run in the extract venv on a split of pictures in every mode (RGB, RGBA,
palette with transparency, grayscale, JPEG, odd sizes); the chat runs its copy of the recipe in this (train) venv,
with another torch. Both round to the shards' float16.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from services.train.chat.encoder import EncoderMismatch, TurnEncoder
from shared.shards import ShardSet
from shared.visdial import load_visdial
from tests.unit.train.chat_world import PICTURES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder(chat_world):
    return TurnEncoder(chat_world.embeddings, torch.device("cpu"))


def _close_in_float16(chat: np.ndarray, shard: np.ndarray) -> None:
    """Bit-equal in float16 almost everywhere; elsewhere one float16 step apart (the two torch builds round the last
    float32 bits differently), or a few steps among the near-zero values where a step is below 1e-5 of the largest."""
    shard = shard.astype(np.float32)
    step = np.spacing(np.abs(shard).astype(np.float16)).astype(np.float32)
    tolerance = np.maximum(step, 1e-5 * np.abs(shard).max())
    assert np.all(np.abs(chat - shard) <= tolerance), float(np.max(np.abs(chat - shard) / tolerance))
    assert np.mean(chat == shard) > 0.99
    cosine = float(chat @ shard / np.linalg.norm(chat) / np.linalg.norm(shard))
    assert cosine > 0.99999


def test_pictures_and_questions_match_the_extract_service(chat_world, encoder):
    shards = ShardSet(chat_world.embeddings, encoder_id="cpu_default")
    split = load_visdial(chat_world.dialogs)
    checked = set()
    for dialog in split.dialogs:
        row = shards.row_of(dialog.image_id)
        round_images, questions = shards.get("round_image", row), shards.get("question", row)
        for t, rnd in enumerate(dialog.rounds):
            picture = chat_world.images / f"{rnd.image_id}{PICTURES[rnd.image_id][0]}"
            _close_in_float16(encoder.image(picture), round_images[t])
            _close_in_float16(encoder.text(rnd.question), questions[t])
            checked.add(rnd.image_id)
    assert checked == set(PICTURES)  # every mode and size went through both


def test_a_different_question_gives_a_different_vector(chat_world, encoder):
    shards = ShardSet(chat_world.embeddings, encoder_id="cpu_default")
    row = shards.row_of(load_visdial(chat_world.dialogs).dialogs[0].image_id)
    shard = shards.get("question", row)[0].astype(np.float32)
    other = encoder.text("is the background white?")
    assert not np.allclose(other, shard, atol=1e-2)  # the comparison above can fail


def test_shards_of_another_recipe_are_refused(chat_world, tmp_path):
    copy = tmp_path / "train"
    copy.mkdir()
    for path in chat_world.embeddings.iterdir():
        (copy / path.name).symlink_to(path)
    index = json.loads((chat_world.embeddings / "index.json").read_text())
    preprocessing = json.loads(index["metadata"]["preprocessing"])
    preprocessing["text_pooling"] = "CLS token"
    index["metadata"]["preprocessing"] = json.dumps(preprocessing)
    (copy / "index.json").unlink()
    (copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(EncoderMismatch, match="text_pooling"):
        TurnEncoder(copy, torch.device("cpu"))
    index["metadata"]["checkpoint_sha256"] = "0" * 64
    index["metadata"]["preprocessing"] = json.dumps({**preprocessing, "text_pooling": "attention-masked mean, "
                                                     "L2-normalised"})
    (copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(EncoderMismatch, match="other encoder weights"):
        TurnEncoder(copy, torch.device("cpu"))
