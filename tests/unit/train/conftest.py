import os

import pytest

from tests.unit.train import toy_world

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """Dialogs + shards + tiny random LLM shared by the tests that only read them."""
    return toy_world.build(tmp_path_factory.mktemp("toy"))


@pytest.fixture
def fresh_toy(tmp_path, toy):
    """Same data, a private output folder (tests that train or write predictions)."""
    return toy_world.ToyWorld(tmp_path, toy.dialogs, toy.embeddings, toy.llm)


@pytest.fixture(scope="session")
def chat_world(tmp_path_factory):
    """Pictures of every kind, a split over them, its cpu_default shards (the real extract verb) and a tiny LLM."""
    from tests.unit.train import chat_world as world

    return world.build(tmp_path_factory.mktemp("chat"))
