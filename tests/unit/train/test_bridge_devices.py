"""Bridge processes and modes: each torchrun rank on GPU LOCAL_RANK, and the frozen LLM's LoRA dropout on in training
and off in inference (the base model's own dropout always off)."""
from __future__ import annotations

import pytest
import torch

from services.train.bridge import distributed
from services.train.bridge import train as bridge_train
from services.train.bridge.config import BridgeTrainConfig, LLMSettings
from services.train.bridge.llm import load_llm, set_llm_mode
from shared.config import ConfigError, load_config


@pytest.fixture
def two_gpus(monkeypatch):
    """torch as on a node with two GPUs (nothing runs on them: only the device bookkeeping is checked)."""
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: current.append(index))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)  # on a 1-GPU machine: no GPU 1 to seed
    return current


def test_each_rank_takes_its_local_gpu(two_gpus):
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}
    assert distributed.local_device(torch.device("cuda"), env) == torch.device("cuda", 1)
    assert two_gpus == [1]  # made current: `cuda` tensors, NCCL and the CUDA RNG state go there too


def test_single_process_and_cpu_runs_keep_their_device(two_gpus):
    assert distributed.local_device(torch.device("cuda"), {}) == torch.device("cuda")
    assert distributed.local_device(torch.device("cpu"), {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == torch.device("cpu")
    assert two_gpus == []


@pytest.mark.parametrize("env, device, error, message", [
    ({"WORLD_SIZE": "2"}, "cuda", RuntimeError, "LOCAL_RANK is not"),
    ({"WORLD_SIZE": "3", "LOCAL_RANK": "2"}, "cuda", RuntimeError, "LOCAL_RANK=2 but this node has 2 visible GPU"),
    ({"WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "cuda:1", ConfigError, "each process takes cuda:LOCAL_RANK"),
])
def test_impossible_rank_layouts_are_errors(two_gpus, env, device, error, message):
    with pytest.raises(error, match=message):
        distributed.local_device(torch.device(device), env)


def test_training_builds_the_model_on_the_local_gpu(fresh_toy, two_gpus, monkeypatch):
    """train() under torchrun (WORLD_SIZE=2, LOCAL_RANK=1) builds LLM and bridge on cuda:1, not on GPU 0."""
    seen = {}

    class Built(Exception):
        pass

    def fake_build(model_cfg, image_dim, text_dim, device, seed):
        seen["device"] = device
        raise Built

    def fake_init(device):
        seen["init"] = device
        return distributed.World(rank=1, size=2)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "init", fake_init)
    monkeypatch.setattr(bridge_train, "build", fake_build)
    cfg = load_config(BridgeTrainConfig, None, fresh_toy.overrides("ranks") + ["device=cuda", "optim.batch_size=8"])
    with pytest.raises(Built):
        bridge_train.train(cfg)
    assert seen == {"init": torch.device("cuda", 1), "device": torch.device("cuda", 1)}


@pytest.fixture
def lora_llm(toy):
    """The toy LLM with LoRA (dropout 0.5) whose B matrices are non-zero, so the adapters change the output."""
    cfg = LLMSettings(path=str(toy.llm))
    cfg.lora.enabled, cfg.lora.dropout, cfg.lora.target_modules = True, 0.5, ["q_proj", "v_proj"]
    llm, _ = load_llm(cfg, torch.device("cpu"))
    torch.manual_seed(0)
    for name, param in llm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param)
    return llm


def _two_forwards(llm) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        return llm(input_ids=ids).logits, llm(input_ids=ids).logits


def _dropouts(llm) -> tuple[list, list]:
    lora = [m for n, m in llm.named_modules() if ".lora_dropout." in n]
    base = [m for n, m in llm.named_modules() if "lora_" not in n and n]
    return lora, base


def test_a_loaded_llm_answers_the_same_twice(lora_llm):
    """What inference gets: every dropout off (LoRA's too), so greedy answers and option scores are repeatable."""
    a, b = _two_forwards(lora_llm)
    assert torch.equal(a, b)
    lora, base = _dropouts(lora_llm)
    assert lora and not any(m.training for m in lora + base)


def test_training_mode_switches_on_lora_dropout_only(lora_llm):
    lora_llm.eval()
    set_llm_mode(lora_llm, training=True)
    a, b = _two_forwards(lora_llm)
    assert not torch.equal(a, b)  # lora.dropout acts in training
    lora, base = _dropouts(lora_llm)
    assert all(m.training for m in lora) and not any(m.training for m in base)
    set_llm_mode(lora_llm, training=False)
    assert torch.equal(*_two_forwards(lora_llm))


def test_bridge_inference_runs_the_llm_in_eval_mode(fresh_toy, monkeypatch):
    """infer() on a bridge trained with LoRA dropout: the LLM reaches prediction with all dropout off."""
    from services.train.bridge import infer as bridge_infer
    from services.train.bridge.config import InferConfig

    overrides = fresh_toy.overrides("lora") + ["optim.max_steps=1", "model.llm.lora.enabled=true",
                                               "model.llm.lora.dropout=0.5"]
    bridge_train.train(load_config(BridgeTrainConfig, None, overrides))
    seen = []

    def spy(bridge, llm, *args):
        seen.append([n for n, m in llm.named_modules() if m.training])
        return []

    monkeypatch.setattr(bridge_infer, "predict", spy)
    bridge_infer.infer(load_config(InferConfig, None, [
        "run=lora", f"outputs_root={fresh_toy.root / 'outputs'}", f"data.dialogs={fresh_toy.dialogs}",
        f"data.embeddings={fresh_toy.embeddings}", "data.encoder_id=toy", "num_threads=1"]))
    assert seen and seen[0] == []
