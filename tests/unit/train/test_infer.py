"""Inference on the toy world: valid predictions.jsonl, new tokens only, resumable without duplicates."""
import json

import pytest
import torch

from shared.config import ConfigError, load_config
from shared.predictions import read_predictions
from shared.visdial import load_visdial

from services.train.bridge.infer import infer
from services.train.bridge.train import train
from services.train.bridge.config import BridgeTrainConfig, InferConfig


def infer_cfg(world, run, extra=()):
    return load_config(InferConfig, None, [
        f"run={run}", f"outputs_root={world.root / 'outputs'}",
        f"data.dialogs={world.dialogs}", f"data.embeddings={world.embeddings}", "data.encoder_id=toy",
        "batch_size=4", "option_batch_size=7", "num_threads=1", *extra])


@pytest.fixture
def trained(fresh_toy):
    torch.set_num_threads(1)
    train(load_config(BridgeTrainConfig, None, fresh_toy.overrides("inf") + [
        "optim.max_steps=2", "prompt.reminder=retrieved"]))
    return fresh_toy


def test_predictions_cover_every_round_and_rank_every_option(trained):
    out = infer(infer_cfg(trained, "inf"))
    rows = read_predictions(out, num_options=6)
    split = load_visdial(trained.dialogs)
    assert {(r["image_id"], r["round_id"]) for r in rows} == {
        (d.image_id, rnd.round_id) for d in split.dialogs for rnd in d.rounds}
    for row in rows:
        assert sorted(row["ranks"]) == list(range(1, 7)) and len(row["scores"]) == 6
        assert "Q:" not in row["raw"] and "<reminder>" not in row["answer"]  # the prompt is never echoed back
    assert (out.parent / "infer_config.yaml").is_file()


def test_infer_resumes_without_duplicates(trained):
    cfg = infer_cfg(trained, "inf")
    out = infer(cfg)
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])  # a crash in the middle of line 6
    infer(cfg)
    again = [json.loads(line) for line in out.read_text().splitlines()]
    before = {(r["image_id"], r["round_id"]): r for r in map(json.loads, lines)}
    assert len(again) == len(before) and {(r["image_id"], r["round_id"]) for r in again} == set(before)
    for row in again:  # the same predictions (batches regroup after a resume: float noise only)
        want = before[(row["image_id"], row["round_id"])]
        assert row["answer"] == want["answer"]
        torch.testing.assert_close(torch.tensor(row["scores"]), torch.tensor(want["scores"]), atol=1e-4, rtol=0)


def test_reminder_none_override_and_last_round_only(trained):
    out = infer(infer_cfg(trained, "inf", ["reminder=none", "data.rounds=last", f"out={trained.root / 'last.jsonl'}"]))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["round_id"] for r in rows} == {5}
    assert not any("gate" in r for r in rows)  # only gated reminders record the gate


def test_gated_rows_record_where_the_gate_fired(trained):
    out = infer(infer_cfg(trained, "inf", ["reminder=gated", f"out={trained.root / 'gated.jsonl'}"]))
    rows = read_predictions(out, num_options=6)
    kinds = {(d.image_id, rnd.round_id): rnd.kind for d in load_visdial(trained.dialogs).dialogs for rnd in d.rounds}
    assert [r["gate"] for r in rows] == [kinds[(r["image_id"], r["round_id"])] == "memory" for r in rows]
    assert any(r["gate"] for r in rows) and not all(r["gate"] for r in rows)


def test_infer_without_a_trained_run_explains(fresh_toy):
    with pytest.raises(ConfigError, match="no trained bridge .*; fix: run `make train-bridge` first"):
        infer(infer_cfg(fresh_toy, "never-trained"))
