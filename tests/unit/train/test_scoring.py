"""Shared-prefix option scoring (tree attention over the options' token trie) equals one full forward per option;
greedy answers hold only new tokens."""
import pytest
import torch

from services.train.bridge.config import LLMSettings
from services.train.bridge.llm import answer_loss, assemble, load_llm
from services.train.bridge.option_trie import build_trie
from services.train.bridge.scoring import encode_prefix, greedy, score_options, score_options_full


@pytest.fixture(scope="module")
def llm(toy):
    model, tokenizer = load_llm(LLMSettings(path=str(toy.llm)), torch.device("cpu"))
    return model, tokenizer


def prefixes(model, tokenizer, lengths=(3, 7, 5)):
    torch.manual_seed(0)
    soft = torch.randn(len(lengths), 4, model.config.hidden_size)
    texts = [[(7 * i + j) % (len(tokenizer) - 3) + 3 for j in range(n)] for i, n in enumerate(lengths)]
    return soft, texts


def test_prefix_scores_equal_full_forwards(llm):
    model, tokenizer = llm
    soft, texts = prefixes(model, tokenizer)
    options = [[[5], [9, 11, 2], [30, 2], [12, 13, 14, 15, 2]] for _ in texts]
    embeds, mask, positions = assemble(soft, [tokenizer.bos_token_id], texts, model.get_input_embeddings(),
                                       tokenizer.pad_token_id, left_pad=True)
    assert mask[0, :4].eq(0).all() and mask[:, -1].eq(1).all()  # left padding, every row ends at the last column
    shared = score_options(model, encode_prefix(model, embeds, mask, positions), options, rows_per_forward=5)
    for row in range(len(texts)):
        full = score_options_full(model, embeds[row: row + 1], mask[row: row + 1], options[row])
        assert max(abs(a - b) for a, b in zip(shared[row], full)) <= 1e-4
    assert len({round(s, 3) for s in shared[0]}) == 4  # the options really differ


# Options that share leading tokens, one that is a prefix of another, a duplicate and a one-token option: the trie
# shares nodes between them, which is exactly what the scorer must get right.
SHARED = [[5, 9, 2], [5, 9, 11, 2], [5, 9], [5, 12, 2], [30], [5, 9, 2], [7, 8, 9, 10, 11, 12, 2]]


def test_trie_shares_option_prefixes():
    trie = build_trie(SHARED)
    assert len(trie.parent) - 1 == 15  # 23 option tokens, 15 distinct (prefix, token) pairs
    assert [trie.token[n] for n in trie.fed] == [5, 9, 11, 12, 7, 8, 9, 10, 11, 12]  # nodes with children only
    assert trie.paths[0] == trie.paths[5] and trie.paths[2] == trie.paths[0][:2]
    visible = trie.ancestors()
    assert visible[2].tolist() == [True] * 3 + [False] * 7  # 5 -> 9 -> 11
    with pytest.raises(ValueError, match="option 1 has no tokens"):
        build_trie([[3], []])


@pytest.mark.parametrize("rows_per_forward", [1, 3, 256])
def test_trie_scores_equal_full_forwards(llm, rows_per_forward):
    model, tokenizer = llm
    soft, texts = prefixes(model, tokenizer)
    options = [SHARED, SHARED[::-1], SHARED[2:5]]  # different trie sizes in one batch: padded nodes
    embeds, mask, positions = assemble(soft, [tokenizer.bos_token_id], texts, model.get_input_embeddings(),
                                       tokenizer.pad_token_id, left_pad=True)
    shared = score_options(model, encode_prefix(model, embeds, mask, positions), options, rows_per_forward)
    for row in range(len(texts)):
        full = score_options_full(model, embeds[row: row + 1], mask[row: row + 1], options[row])
        assert max(abs(a - b) for a, b in zip(shared[row], full)) <= 1e-4
    assert shared[0][0] == shared[0][5] and shared[0][2] > shared[0][0]  # duplicate equal; a prefix scores higher


def tiny_gemma3(attn: str, window: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=window,
                              layer_types=["sliding_attention", "full_attention"] * 2, max_position_embeddings=128,
                              attn_implementation=attn)
    return Gemma3ForCausalLM(config).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_trie_scores_respect_sliding_windows(attn):
    """Gemma-3's sliding-window layers: with a 4-token window a 6-token prefix is partly out of sight, and the
    tree mask must hide it exactly as the model's own masks do (in both attention implementations)."""
    model = tiny_gemma3(attn, window=4)
    embed = model.get_input_embeddings()
    options = [[3, 4, 5, 6], [3, 4, 7], [8], [3, 9, 10, 11, 12]]
    for prompt in ([2, 20, 21, 22, 23, 24], [2, 30]):
        ids = torch.tensor([prompt])
        embeds, mask = embed(ids), torch.ones_like(ids)
        prefix = encode_prefix(model, embeds, mask, torch.arange(len(prompt))[None])
        ours = score_options(model, prefix, [options], rows_per_forward=2)[0]
        full = score_options_full(model, embeds, mask, options)
        assert max(abs(a - b) for a, b in zip(ours, full)) <= 1e-4, (prompt, ours, full)
    wide = tiny_gemma3(attn, window=64)  # same weights, a window that hides nothing: the scores change
    wide.load_state_dict(model.state_dict())
    ids = torch.tensor([[2, 20, 21, 22, 23, 24]])
    prefix = encode_prefix(wide, embed(ids), torch.ones_like(ids), torch.arange(6)[None])
    assert max(abs(a - b) for a, b in zip(score_options(wide, prefix, [options])[0], ours)) > 1e-3


def test_greedy_returns_new_tokens_like_generate(llm):
    model, tokenizer = llm
    soft, texts = prefixes(model, tokenizer)
    embeds, mask, positions = assemble(soft, [tokenizer.bos_token_id], texts, model.get_input_embeddings(),
                                       tokenizer.pad_token_id, left_pad=True)
    ours = greedy(model, encode_prefix(model, embeds, mask, positions), 6, eos_id=-1)  # never stops early
    for row in range(len(texts)):
        real = embeds[row: row + 1, mask[row].bool()]
        ref = model.generate(inputs_embeds=real, attention_mask=torch.ones(1, real.shape[1], dtype=torch.long),
                             max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert ours[row] == ref[0].tolist()  # generate() with only inputs_embeds returns only the new tokens


def test_greedy_stops_at_the_end_token(llm):
    model, tokenizer = llm
    soft, texts = prefixes(model, tokenizer, lengths=(4,))
    embeds, mask, positions = assemble(soft, [], texts, model.get_input_embeddings(), 0, left_pad=True)
    prefix = encode_prefix(model, embeds, mask, positions)
    first = int(prefix.last_logprobs.argmax(-1)[0])
    assert greedy(model, prefix, 5, eos_id=first) == [[]]


def test_answer_loss_covers_answer_tokens_only(llm):
    model, tokenizer = llm
    soft, texts = prefixes(model, tokenizer, lengths=(3, 6))
    answers = [[10, 2], [11, 12, 2]]
    losses = answer_loss(model, soft, [1], texts, answers, tokenizer.pad_token_id)
    # reference: full logits of the unpadded sequence, mean NLL over the answer positions
    for row in range(2):
        embeds, mask, positions = assemble(soft[row: row + 1], [1], [texts[row] + answers[row]],
                                           model.get_input_embeddings(), 0, left_pad=False)
        logits = model(inputs_embeds=embeds).logits[0].log_softmax(-1)
        start = 1 + 4 + len(texts[row])
        want = -torch.stack([logits[start - 1 + j, t] for j, t in enumerate(answers[row])]).mean()
        torch.testing.assert_close(losses[row], want, atol=1e-5, rtol=1e-5)


def test_nf4_and_lora_load_on_cpu(toy):
    settings = LLMSettings(path=str(toy.llm), quantization="nf4")
    settings.lora.enabled = True
    model, tokenizer = load_llm(settings, torch.device("cpu"))
    import bitsandbytes as bnb
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    soft = torch.randn(1, 4, model.get_input_embeddings().embedding_dim, requires_grad=True)
    loss = answer_loss(model, soft, [], [[5, 6]], [[7, 2]], tokenizer.pad_token_id).sum()
    loss.backward()
    assert torch.isfinite(loss) and soft.grad.abs().sum() > 0


def test_missing_llm_folder_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make checkpoints-demo"):
        load_llm(LLMSettings(path=str(tmp_path / "smollm2-135m-instruct")), torch.device("cpu"))
