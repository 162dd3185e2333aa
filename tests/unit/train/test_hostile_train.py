"""Hostile inputs to the train service's verbs (bridge, infer, finetune, finetune-infer, tiny-gemma): one line each.

Every case runs `python -m services.train`'s main on the toy world (tests/unit/train/toy_world.py) and checks with
tests/hostile.py: exit status 2, one `train <verb>: error: ...; fix: ...` line naming the file or place, no traceback,
and that a run's earlier outputs did not change.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.train.__main__ import main
from shared.shards import ShardSet, build_index, shard_name, write_shard
from tests.hostile import check, snapshot

ROOT = Path(__file__).resolve().parents[3]
BRIDGE = ["bridge", "--config", str(ROOT / "configs/train/bridge_demo.yaml")]
INFER = ["infer", "--config", str(ROOT / "configs/train/infer_demo.yaml")]


def tiny(world, run: str = "toy", steps: int = 2) -> list[str]:
    return [*world.overrides(run), f"optim.max_steps={steps}", f"save_every={steps}"]


def infer_args(world, run: str = "toy", *extra: str) -> list[str]:
    return [*INFER, f"run={run}", f"outputs_root={world.root / 'outputs'}", f"data.dialogs={world.dialogs}",
            f"data.embeddings={world.embeddings}", "data.encoder_id=toy", "num_threads=1", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy):
    """One toy run trained for 2 steps and inferred once (the outputs the later cases must not change)."""
    from tests.unit.train.toy_world import ToyWorld

    world = ToyWorld(tmp_path_factory.mktemp("hostile"), toy.dialogs, toy.embeddings, toy.llm)
    assert main([*BRIDGE, *tiny(world)]) == 0
    assert main(infer_args(world)) == 0
    return world


# --- settings refused when the config loads --------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "mentions"), [
    ("optim.max_steps=-5", ["optim.max_steps=-5: must be >= 1"]),
    ("optim.lr=0", ["optim.lr=0.0: must be > 0"]),
    ("optim.batch_size=10", ["not a multiple of optim.micro_batch_size"]),
    ("prompt.reminder=always", ["'always' is not one of"]),
    ("model.trainable=[fc,everything]", ["unknown parts ['everything']"]),
    ("model.memory_bank_length=-1", ["memory_bank_length=-1"]),
    ("run=../../elsewhere", ["not a usable run name"]),
    ("num_threads=0", ["num_threads=0: must be >= 1"]),
    ("data.limit_dialogs=0", ["limit_dialogs=0: must be >= 1"]),
    ("data.repeat_memory_rounds=0", ["repeat_memory_rounds=0"]),
    ("checkpoints_root=ckpt", ["checkpoints_root is no longer a setting", "outputs/<run>/checkpoints"]),
    ("data.verify_checksums=true", ["verify_checksums is no longer a setting", "data.verify="]),
    ("optim.max_steps=ten", ["optim.max_steps: expected int"]),
    ("model.qformer.num_hidden_layers", ["unexpected argument"]),
])
def test_bad_bridge_settings(capsys, fresh_toy, override, mentions):
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy), override], "train bridge", *mentions)
    assert not (fresh_toy.root / "outputs").exists()  # nothing was written


# --- inputs that do not exist or do not fit ------------------------------------------------------------------------
def test_missing_dialogs_and_embeddings(capsys, fresh_toy, tmp_path):
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy), f"data.dialogs={tmp_path / 'none.json'}"], "train bridge",
          "none.json")
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy), f"data.embeddings={tmp_path / 'emb'}"], "train bridge", "emb")


def test_embeddings_of_another_encoder(capsys, fresh_toy):
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy), "data.encoder_id=imagebind_huge"], "train bridge",
          "written by encoder 'toy'")


def test_missing_llm_folder(capsys, fresh_toy, tmp_path):
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy), f"model.llm.path={tmp_path / 'llm'}"], "train bridge",
          "config.json missing")


def test_missing_qformer_checkpoint(capsys, fresh_toy, tmp_path):
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy), f"model.qformer.checkpoint={tmp_path / 'blip2'}"],
          "train bridge", "blip2")


def test_cuda_asked_for_without_a_gpu(capsys, fresh_toy):
    import torch

    if torch.cuda.is_available():  # the case only exists on a machine without CUDA
        return
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy), "device=cuda"], "train bridge", "device=cuda", "device=auto")


def test_a_corrupted_shard_is_caught_before_training(capsys, fresh_toy, tmp_path):
    emb = tmp_path / "emb"
    shutil.copytree(fresh_toy.embeddings, emb)
    shard = emb / shard_name(1, 2)
    data = bytearray(shard.read_bytes())
    data[-2] ^= 0x40  # a flipped bit in an embedding: headers, sizes and dims all still agree
    shard.write_bytes(bytes(data))
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy), f"data.embeddings={emb}"], "train bridge", "sha256",
          shard.name)


# --- a run's outputs are never replaced or mixed silently -----------------------------------------------------------
def test_resume_false_on_a_finished_run_keeps_it(capsys, trained):
    before = snapshot(trained.root / "outputs")
    check(capsys, main, [*BRIDGE, *tiny(trained), "resume=false"], "train bridge", "already holds checkpoints",
          "overwrite=true")
    assert snapshot(trained.root / "outputs") == before


def test_resume_with_other_settings_keeps_the_run(capsys, trained):
    before = snapshot(trained.root / "outputs")
    check(capsys, main, [*BRIDGE, *tiny(trained), "optim.lr=0.5"], "train bridge", "different settings (optim)")
    assert snapshot(trained.root / "outputs") == before


def test_moving_a_run_is_not_a_change_of_settings(capsys, trained, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(trained.root / "outputs", moved)
    assert main([*BRIDGE, *tiny(trained), f"outputs_root={moved}", "num_threads=2", "log_every=3"]) == 0


def test_a_run_of_the_old_layout_names_the_move(capsys, fresh_toy, monkeypatch):
    monkeypatch.chdir(fresh_toy.root)
    old = fresh_toy.root / "checkpoints" / "toy"
    old.mkdir(parents=True)
    (old / "latest.json").write_text('{"step": 2, "dir": "step-000002"}')
    check(capsys, main, [*BRIDGE, *tiny(fresh_toy)], "train bridge", "checkpoints/toy",
          "mv checkpoints/toy")


def test_infer_without_a_trained_run(capsys, fresh_toy):
    check(capsys, main, infer_args(fresh_toy, "never"), "train infer", "no trained bridge", "make train-bridge")


def test_infer_resume_false_keeps_the_predictions(capsys, trained):
    before = snapshot(trained.root / "outputs")
    check(capsys, main, infer_args(trained, "toy", "resume=false"), "train infer", "already holds predictions",
          "overwrite=true")
    assert snapshot(trained.root / "outputs") == before


def test_infer_on_a_dialog_the_extraction_dropped(capsys, trained, tmp_path):
    """max_failures dropped a dialog's row; infer once blamed a changed data file for it."""
    shards = ShardSet(trained.embeddings)
    dropped = int(shards.image_ids[0])
    keep = np.arange(1, len(shards))
    tensors = {name: shards.get(name, keep) for name in shards.tensor_names}
    meta = {"encoder_id": "toy", "checkpoint_sha256": "none", "image_dim": shards.dims["image"],
            "text_dim": shards.dims["text"], "dtype": "float16", "preprocessing": {}, "code_version": "test",
            "split": shards.split, "shard_index": 0, "num_shards": 1, "dropped_image_ids": json.dumps([dropped]),
            "source_rows": len(shards)}
    emb = tmp_path / "emb"
    emb.mkdir()
    write_shard(emb / shard_name(0, 1), tensors, meta)
    build_index(emb)
    check(capsys, main, [*infer_args(trained, "toy", f"data.embeddings={emb}", f"out={tmp_path / 'p.jsonl'}")],
          "train infer", f"image id {dropped}", "dropped its dialog", "failures.jsonl")


# --- fine-tuning and its helpers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "prog", "mentions"), [
    (["finetune", "--config", "configs/train/gemma3_tiny_cpu.yaml", "lora.finetune_vision_layers=false",
      "lora.finetune_language_layers=false"], "train finetune", ["both false"]),
    (["finetune", "--config", "configs/train/gemma3_tiny_cpu.yaml", "data.reminder=generated"], "train finetune",
     ["needs data.source=generated"]),
    (["finetune", "--config", "configs/train/gemma3_tiny_cpu.yaml", "train.max_steps=3"], "train finetune",
     ["the `train` section is now `optim`"]),
    (["finetune", "--config", "configs/train/gemma3_tiny_cpu.yaml", "lora.enabled=false"], "train finetune",
     ["fine-tuning trains LoRA adapters"]),
    (["finetune-infer", "--config", "configs/train/finetune_infer_tiny_cpu.yaml", "image=x.png"],
     "train finetune-infer", ["needs both image=... and conversation=..."]),
    (["tiny-gemma", "hidden=65"], "train tiny-gemma", ["multiple of 64"]),
    (["prepare-checkpoints", "--config", "configs/train/weights_demo.yaml"], "train", ["renamed"]),
    (["bridg", "--config", "configs/train/bridge_demo.yaml"], "train", ["unknown verb 'bridg'"]),
])
def test_bad_finetune_and_helper_requests(capsys, argv, prog, mentions):
    check(capsys, main, argv, prog, *mentions)


def test_finetune_infer_without_an_adapter(capsys, tmp_path):
    check(capsys, main, ["finetune-infer", "--config", "configs/train/finetune_infer_tiny_cpu.yaml",
                         f"outputs_root={tmp_path}"], "train finetune-infer", "adapter", "finetune")


def test_finetune_with_a_missing_model_folder(capsys, tmp_path):
    check(capsys, main, ["finetune", "--config", "configs/train/gemma3_tiny_cpu.yaml",
                         f"model.path={tmp_path / 'gemma'}", f"outputs_root={tmp_path / 'out'}"], "train finetune",
          "config.json missing")
    assert not (tmp_path / "out").exists()


def test_a_config_path_that_is_a_folder(capsys):
    check(capsys, main, ["bridge", "--config", "configs/train"], "train bridge", "configs/train")


def test_outputs_of_an_earlier_run_survive_every_case_above(trained):
    assert (trained.root / "outputs" / "toy" / "predictions.jsonl").stat().st_size > 0
    assert Path(trained.root / "outputs" / "toy" / "checkpoints" / "latest.json").is_file()
