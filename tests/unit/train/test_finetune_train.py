"""The peft backend end to end on a tiny random Gemma3ForConditionalGeneration (vision + text), 4-bit on CPU:
3 training steps, an interrupted run resumed to the same adapter, reload + generation of new tokens only,
resumable predictions.jsonl."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from services.train.finetune.train import run
from services.train.finetune.config import FinetuneConfig, FinetuneInferConfig
from services.train.__main__ import main as train_cli
from services.train.finetune.infer import Predictor, predict_split
from services.train.finetune.tiny import build_tiny_gemma3
from shared.config import load_config
from shared.predictions import read_predictions
from shared.runlog import read_metrics
from tests.unit.train.test_finetune_data import write_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    dialogs, images = write_split(root)
    return {"root": root, "model": build_tiny_gemma3(root / "tiny-gemma3"), "dialogs": dialogs, "images": images}


def _config(world, run_name: str, *extra: str) -> FinetuneConfig:
    root = world["root"]
    return load_config(FinetuneConfig, None, [
        f"run={run_name}", f"outputs_root={root / 'outputs'}",
        "backend=peft", "device=cpu", f"model.path={world['model']}", "model.load_in_4bit=true",
        "model.dtype=float32", "model.gradient_checkpointing=false", "model.max_seq_length=512", "lora.r=4",
        "lora.alpha=8", f"data.dialogs={world['dialogs']}", f"data.images={world['images']}", "data.reminder=retrieved",
        "data.num_workers=0", "optim.micro_batch_size=1", "optim.batch_size=2", "optim.lr=0.01",
        "optim.warmup_steps=0", "optim.optimizer=adamw_8bit", "optim.precision=fp32", "optim.max_steps=3",
        "save_every=10", *extra])


@pytest.fixture(scope="module")
def straight(world):
    return run(_config(world, "straight"))


def test_three_steps_save_a_peft_adapter(world, straight):
    adapter_dir = world["root"] / "outputs" / "straight" / "adapter"
    assert straight["finished"] and straight["step"] == 3 and straight["backend"] == "peft"
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and "vision_tower" in adapter["target_modules"]
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: the steps trained it
    metrics = read_metrics(world["root"] / "outputs" / "straight" / "metrics.jsonl")
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert (world["root"] / "outputs" / "straight" / "config.yaml").is_file()


def test_interrupted_run_resumes_to_the_same_adapter(world, straight):
    first = run(_config(world, "resumed", "stop_at_step=2"))
    assert not first["finished"] and first["step"] == 2
    run_dir = world["root"] / "outputs" / "resumed"
    assert (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (run_dir / "adapter").exists()  # only a finished run writes the final adapter
    second = run(_config(world, "resumed"))
    assert second["finished"] and second["resumed_from"] == "checkpoint-2"
    expected = load_file(str(world["root"] / "outputs" / "straight" / "adapter" / "adapter_model.safetensors"))
    got = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-6)
    steps = [m["step"] for m in read_metrics(world["root"] / "outputs" / "resumed" / "metrics.jsonl") if "loss" in m]
    assert steps == [1, 2, 3]  # no step logged twice across the interruption


def test_resume_refuses_a_changed_recipe(world, straight):
    from shared.config import ConfigError

    with pytest.raises(ConfigError, match="other lora settings"):
        run(_config(world, "straight", "lora.r=8"))


def test_reload_and_generate_new_tokens_only(world, straight):
    root = world["root"]
    cfg = load_config(FinetuneInferConfig, None, [
        "run=straight", f"outputs_root={root / 'outputs'}",
        "device=cpu", f"data.dialogs={world['dialogs']}", f"images={world['images']}", "max_new_tokens=6",
        "batch_size=4"])
    predictor = Predictor(cfg)
    assert predictor.instruction.startswith("First recall")  # the training prompt, read from the run
    out = predict_split(cfg, predictor)
    rows = read_predictions(out)
    assert [(r["image_id"], r["round_id"]) for r in rows] == [(11, 1), (11, 2), (11, 3), (12, 1), (12, 2), (12, 3)]
    tok = predictor.tokenizer
    for row in rows:
        assert len(tok(row["raw"], add_special_tokens=False)["input_ids"]) <= 6 + 2  # re-tokenising may split
        assert "Caption:" not in row["raw"] and "First recall" not in row["raw"]  # the prompt is never decoded
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1]) + "\n")  # as if killed before the last batch's second write
    predict_split(cfg, predictor)
    again = read_predictions(out)
    assert [(r["image_id"], r["round_id"]) for r in again] == [(r["image_id"], r["round_id"]) for r in rows]


def test_single_example_from_the_command_line(world, straight, capsys):
    root = world["root"]
    code = train_cli(["finetune-infer", "run=straight", f"outputs_root={root / 'outputs'}", "device=cpu",
                      "max_new_tokens=4", f"image={world['images'] / '11.png'}",
                      r"conversation=Q: what color is it?\nA: red\nQ: and the shape?"])
    assert code == 0
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(single) == {"answer", "raw"} and isinstance(single["raw"], str)


def test_adapter_changes_the_model(world, straight):
    root = world["root"]
    predictor = Predictor(load_config(FinetuneInferConfig, None, [
        "run=straight", f"outputs_root={root / 'outputs'}", "device=cpu"]))
    from services.train.finetune.collate import ResponseOnlyCollator
    from services.train.finetune.records import records_from_visdial

    record = records_from_visdial(world["dialogs"], world["images"], reminder="retrieved")[2]
    batch = ResponseOnlyCollator(predictor.processor, predictor.instruction, 512)([record])
    batch.pop("labels")
    with torch.inference_mode():
        tuned = predictor.model(**batch).logits
        with predictor.model.disable_adapter():
            base = predictor.model(**batch).logits
    assert not torch.allclose(tuned, base)
