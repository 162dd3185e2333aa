"""Training end to end on the toy world: checkpoints, exact resume after SIGKILL, DDP == one process."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[3]


def run_cmd(args: list[str], world, run: str, extra: list[str] = ()) -> list[str]:
    return [*args, "bridge", *world.overrides(run), "model.qformer.dropout=0.1", *extra]


def train_subprocess(world, run, extra=(), launcher=(sys.executable, "-m", "services.train")):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(run_cmd(list(launcher), world, run, extra), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def final_weights(world, run):
    latest = json.loads((world.root / "outputs" / run / "checkpoints" / "latest.json").read_text())
    return latest["step"], load_file(str(world.root / "outputs" / run / "checkpoints" / latest["dir"] / "weights.safetensors"))


def losses(world, run):
    lines = (world.root / "outputs" / run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_weights(fresh_toy):
    steps = ["optim.max_steps=40", "save_every=3", "log_every=1"]
    done = train_subprocess(fresh_toy, "straight", steps)
    assert done.returncode == 0, done.stderr[-3000:]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(run_cmd([sys.executable, "-m", "services.train"], fresh_toy, "killed", steps),
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = fresh_toy.root / "outputs" / "killed" / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    while not latest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at, _ = final_weights(fresh_toy, "killed")
    assert killed_at < 40, "the run finished before the kill; the test did not interrupt anything"

    resumed = train_subprocess(fresh_toy, "killed", [*steps, "resume=true"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step_a, want = final_weights(fresh_toy, "straight")
    step_b, got = final_weights(fresh_toy, "killed")
    assert step_a == step_b == 40 and want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    assert losses(fresh_toy, "killed") == losses(fresh_toy, "straight")  # no step logged twice or lost


def test_trainable_parts_change_and_frozen_parts_do_not(fresh_toy):
    from shared.config import load_config
    from services.train.bridge.runtime import build
    from services.train.bridge.train import train
    from services.train.bridge.config import BridgeTrainConfig

    cfg = load_config(BridgeTrainConfig, None, fresh_toy.overrides("parts") + [
        "model.trainable=[fc,query_tokens,llm_proj]", "model.llm.lora.enabled=true", "optim.max_steps=3"])
    torch.set_num_threads(1)
    bridge, llm, _ = build(cfg.model, 12, 8, torch.device("cpu"), cfg.seed)
    before = {**{f"bridge.{k}": v.clone() for k, v in bridge.state_dict().items()},
              **{f"llm.{k}": v.clone() for k, v in llm.state_dict().items()}}
    train(cfg)
    _, after = final_weights(fresh_toy, "parts")
    trained = {"bridge.fc.weight", "bridge.token_norm.weight", "bridge.query_tokens", "bridge.llm_proj.weight"}
    for name in trained:
        assert not torch.equal(before[name], after[name]), f"{name} should have been trained"
    lora = [k for k in after if "lora_B" in k]
    assert lora and all(not torch.equal(before[k], after[k]) for k in lora)
    frozen = [k for k in after if k.startswith("bridge.turn_pe") or k.startswith("bridge.qformer.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    # the base LLM is never saved (and so never changes): only its adapters are
    assert not [k for k in after if k.startswith("llm.") and "lora_" not in k]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(fresh_toy):
    steps = ["optim.max_steps=5", "save_every=5", "model.qformer.dropout=0.0", "optim.batch_size=4"]
    single = train_subprocess(fresh_toy, "single", [*steps, "optim.micro_batch_size=4"])
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "services.train")
    ddp = train_subprocess(fresh_toy, "ddp", [*steps, "optim.micro_batch_size=2"], launcher=launcher)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    torch.testing.assert_close(torch.tensor(losses(fresh_toy, "ddp")), torch.tensor(losses(fresh_toy, "single")),
                               rtol=1e-5, atol=1e-6)
    _, one = final_weights(fresh_toy, "single")
    _, two = final_weights(fresh_toy, "ddp")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6)
    state = json.loads((fresh_toy.root / "outputs" / "ddp" / "checkpoints" / "step-000005" / "state.json").read_text())
    assert state["world_size"] == 2


def test_a_finished_run_is_not_overwritten_without_resume(fresh_toy):
    from services.train.bridge.config import BridgeTrainConfig
    from services.train.bridge.train import train
    from shared.config import ConfigError, load_config

    cfg = load_config(BridgeTrainConfig, None, fresh_toy.overrides("twice") + ["optim.max_steps=2", "resume=false"])
    train(cfg)
    with pytest.raises(ConfigError, match="already holds checkpoints of this run; fix: resume=true continues it; "
                                          "overwrite=true starts it afresh"):
        train(cfg)
    afresh = load_config(BridgeTrainConfig, None, fresh_toy.overrides("twice") + [
        "optim.max_steps=1", "resume=false", "overwrite=true"])
    train(afresh)  # replacing was asked for: the old run's checkpoints and metrics are gone, not mixed in
    folder = fresh_toy.root / "outputs" / "twice"
    assert [p.name for p in (folder / "checkpoints").glob("step-*")] == ["step-000001"]
    assert [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()] == [1]
    changed = load_config(BridgeTrainConfig, None, fresh_toy.overrides("twice") + ["optim.max_steps=2",
                                                                                    "resume=true", "optim.lr=0.5"])
    with pytest.raises(ValueError, match="optim"):
        train(changed)


def test_settings_added_after_a_checkpoint_compare_as_their_defaults():
    from shared.config import to_dict
    from services.train.bridge.config import BridgeTrainConfig
    from services.train.bridge.checkpoints import changed_settings

    cfg = BridgeTrainConfig()
    saved = to_dict(cfg)
    del saved["model"]["max_pictures"], saved["data"]["repeat_memory_rounds"]  # a checkpoint from before they existed
    assert changed_settings(saved, cfg) == []
    assert changed_settings({**saved, "resume": not cfg.resume}, cfg) == []  # resume is not a setting
    moved = {**saved, "outputs_root": "/elsewhere", "num_threads": 7, "save_every": 99, "log_every": 3}
    assert changed_settings(moved, cfg) == []  # nor are locations and how often to save or log
    saved["model"]["max_pictures"] = 3
    assert changed_settings(saved, cfg) == ["model"]
