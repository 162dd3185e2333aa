"""Shared-prefix option scoring equals one full forward per option; greedy answers hold only new tokens."""
import pytest
import torch

from services.train.bridge.config import LLMSettings
from services.train.bridge.llm import answer_loss, assemble, load_llm
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
