"""Bridge model: turn tokens, memory on/off, right-aligned batching, query memory bank, pretrained Q-Former."""
import pytest
import torch

from services.train.bridge.model import Bridge
from services.train.bridge.config import BridgeModelSettings, QFormerSettings


def tiny_settings(**kw) -> BridgeModelSettings:
    q = QFormerSettings(num_query_tokens=4, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=32, dropout=0.0)
    return BridgeModelSettings(**{"dim": 8, "max_turns": 6, "memory_bank_length": 3, "qformer": q, **kw})


def inputs(batch=2, steps=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    image, question = torch.randn(batch, steps, 6, generator=g), torch.randn(batch, steps, 5, generator=g)
    turn = torch.arange(1, steps + 1).repeat(batch, 1)
    return image, question, turn


def build(**kw) -> Bridge:
    torch.manual_seed(0)
    return Bridge(tiny_settings(**kw), image_dim=6, text_dim=5, llm_dim=12).eval()


def test_soft_tokens_have_the_llm_width():
    out = build()(*inputs())
    assert out.shape == (2, 4, 12) and torch.isfinite(out).all()


@pytest.mark.parametrize("query_memory", [False, True])
def test_past_turns_matter_only_with_memory(query_memory):
    image, question, turn = inputs()
    changed = image.clone()
    changed[:, 0] = torch.randn(changed[:, 0].shape)  # a different picture at turn 1
    with_memory = build(query_memory_bank=query_memory)
    assert not torch.allclose(with_memory(image, question, turn), with_memory(changed, question, turn))
    without = build(memory_bank_length=0)
    torch.testing.assert_close(without(image, question, turn), without(changed, question, turn))
    torch.testing.assert_close(without(image, question, turn), without(image[:, -1:], question[:, -1:], turn[:, -1:]))


@pytest.mark.parametrize("query_memory", [False, True])
def test_a_row_is_the_same_alone_and_right_aligned_in_a_longer_batch(query_memory):
    model = build(query_memory_bank=query_memory, memory_bank_length=2)  # 2 slots: real compression happens
    image, question, turn = inputs(batch=2, steps=5)
    short = 3
    alone = model(image[:1, :short], question[:1, :short], turn[:1, :short])
    padded_turn = turn.clone()
    padded_turn[0] = torch.tensor([0, 0, 1, 2, 3])  # row 0 has 3 turns, right-aligned
    padded_image, padded_question = image.clone(), question.clone()
    padded_image[0, 2:], padded_question[0, 2:] = image[0, :short], question[0, :short]
    padded_image[0, :2] = 100.0  # garbage in the inactive steps must not leak
    batched = model(padded_image, padded_question, padded_turn)
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)


def test_query_memory_bank_changes_the_queries():
    image, question, turn = inputs()
    plain, with_queries = build(), build(query_memory_bank=True)
    with_queries.load_state_dict(plain.state_dict())  # same weights: only the extra keys/values differ
    assert not torch.allclose(plain(image, question, turn), with_queries(image, question, turn))


def test_trainable_groups():
    model = build()
    chosen = model.set_trainable(["fc", "llm_proj", "auto"])
    assert chosen == ["fc", "llm_proj", "qformer"]  # auto adds the scratch Q-Former
    names = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"fc", "token_norm", "llm_proj", "qformer"}
    with pytest.raises(ValueError, match="unknown parts"):
        model.set_trainable(["vision_tower"])


def test_turns_beyond_max_turns_are_refused():
    image, question, _ = inputs(steps=2)
    with pytest.raises(ValueError, match="max_turns"):
        build()(image, question, torch.tensor([[6, 7], [1, 2]]))


def tiny_blip2(folder, encoder_hidden_size=8, instruct=False):
    import transformers as tf

    prefix = "InstructBlip" if instruct else "Blip2"
    config = getattr(tf, f"{prefix}Config")(
        vision_config=getattr(tf, f"{prefix}VisionConfig")(
            hidden_size=encoder_hidden_size, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
            image_size=8, patch_size=4).to_dict(),
        qformer_config=getattr(tf, f"{prefix}QFormerConfig")(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            encoder_hidden_size=encoder_hidden_size, vocab_size=40).to_dict(),
        text_config=tf.OPTConfig(hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=50, word_embed_proj_dim=16).to_dict(),
        num_query_tokens=3)
    torch.manual_seed(3)
    model = getattr(tf, f"{prefix}ForConditionalGeneration")(config)
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("instruct", [False, True])
def test_qformer_loads_from_a_blip2_or_instructblip_checkpoint(tmp_path, instruct):
    source = tiny_blip2(tmp_path / "ckpt", instruct=instruct)
    bridge = Bridge(tiny_settings(qformer=QFormerSettings(checkpoint=str(tmp_path / "ckpt"), dropout=0.0)),
                    image_dim=6, text_dim=5, llm_dim=12)
    assert bridge.qformer_pretrained and bridge.qformer_report["loaded"] == len(bridge.qformer.state_dict())
    assert bridge.query_tokens.shape == (1, 3, 16)
    torch.testing.assert_close(bridge.query_tokens.data, source.query_tokens.data)
    theirs = source.qformer.state_dict()
    for name, value in bridge.qformer.state_dict().items():
        key = f"embeddings.{name}" if instruct and name.startswith("layernorm.") else name
        torch.testing.assert_close(value, theirs[key])
    unexpected = bridge.qformer_report["unexpected"]  # InstructBLIP's text branch is reported, not silently used
    assert bool(unexpected) == instruct and all("embeddings" in k or ".intermediate." in k or ".output." in k
                                                for k in unexpected)
    assert bridge.set_trainable(["fc", "auto"]) == ["fc"]  # a pretrained Q-Former stays frozen under auto


def test_qformer_checkpoint_width_mismatch_is_explained(tmp_path):
    tiny_blip2(tmp_path / "blip2", encoder_hidden_size=12)
    with pytest.raises(ValueError, match="set model.dim=12"):
        Bridge(tiny_settings(qformer=QFormerSettings(checkpoint=str(tmp_path / "blip2"))), 6, 5, 12)
    with pytest.raises(FileNotFoundError, match="config.json"):
        Bridge(tiny_settings(qformer=QFormerSettings(checkpoint=str(tmp_path / "nothing"))), 6, 5, 12)


@pytest.mark.slow
def test_real_size_smoke_runs_on_cpu_with_a_tiny_architecture(tmp_path):
    """The GPU smoke path (services/train/smoke.py) on CPU: nf4 LLM of a tiny Llama shape, the shipped real config."""
    from services.train.bridge.smoke import real_size_steps

    tiny = dict(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256)
    figures = real_size_steps("configs/train/bridge_llama32_1b.yaml", steps=1, micro_batch=2, dims=(12, 8),
                              prompt_tokens=5, answer_tokens=2, workdir=str(tmp_path), device="cpu",
                              architecture=tiny, overrides=("model.dim=16", "model.qformer.hidden_size=16",
                                                            "model.qformer.num_hidden_layers=2",
                                                            "model.qformer.num_attention_heads=2",
                                                            "model.qformer.intermediate_size=32"))
    assert figures["tokens_per_s"] > 0 and torch.isfinite(torch.tensor(figures["loss"]))


@pytest.mark.parametrize("query_memory", [False, True])
def test_empty_memory_slots_are_masked_out(query_memory):
    """At the first turn the bank holds only empty slots: the result must equal the memory-off model's."""
    with_memory = build(memory_bank_length=10, query_memory_bank=query_memory)
    without = build(memory_bank_length=0)
    without.load_state_dict(with_memory.state_dict())
    image, question, turn = inputs(batch=2, steps=1)
    torch.testing.assert_close(with_memory(image, question, turn), without(image, question, turn))


def test_picture_embedding_tells_pictures_apart_and_trains_with_turn_pe():
    image, question, turn = inputs()
    first = torch.ones_like(turn)
    second = first.clone()
    second[:, 3:] = 2  # a new picture from turn 4 on
    model = build(max_pictures=2)
    assert not torch.allclose(model(image, question, turn, first), model(image, question, turn, second))
    assert model.group_of("picture_pe.weight") == "turn_pe"
    model.set_trainable(["turn_pe"])
    assert model.picture_pe.weight.requires_grad and not model.fc.weight.requires_grad
    with pytest.raises(ValueError, match="picture"):
        model(image, question, turn)
    assert build().picture_pe is None  # off by default: one picture per VisDial dialog
