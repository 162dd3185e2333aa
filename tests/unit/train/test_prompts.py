"""Prompts never contain the open round's ground-truth answer; reminders come from earlier rounds only."""
import pytest
from transformers import AutoTokenizer

from shared.reminder import parse_reminder
from shared.visdial import load_visdial

from services.train.bridge.data import DialogData, PromptBuilder, make_batch
from shared.config import ConfigError
from shared.memory import GateConfig
from services.train.bridge.config import BridgeDataSettings, PromptSettings
from tests.unit.train import toy_world


@pytest.fixture(scope="module")
def unique_world(tmp_path_factory):
    """Every answer is a string no other round uses, so finding it in a prompt means a leak."""
    return toy_world.build(tmp_path_factory.mktemp("unique"), num_dialogs=4, rounds=6, unique_answers=True)


@pytest.mark.parametrize("reminder", ["none", "retrieved", "gated"])
def test_open_answer_never_in_prompt(unique_world, reminder):
    tokenizer = AutoTokenizer.from_pretrained(unique_world.llm)
    builder = PromptBuilder(PromptSettings(reminder=reminder, reminder_top_k=10, max_prompt_tokens=4096), tokenizer)
    split = load_visdial(unique_world.dialogs)
    earlier_seen = 0
    for d, dialog in enumerate(split.dialogs):
        texts = builder.texts(dialog)
        for rnd, text in zip(dialog.rounds, texts):
            assert rnd.answer not in text, f"round {rnd.round_id} leaks its answer: {text!r}"
            later = [r.answer for r in dialog.rounds if r.round_id > rnd.round_id]
            assert not any(a in text for a in later)
            earlier_seen += sum(r.answer in text for r in dialog.rounds if r.round_id < rnd.round_id)
            if reminder != "none":
                turns = [item.turn for item in parse_reminder(text)]
                assert all(t < rnd.round_id for t in turns)
                assert len(turns) == (0 if reminder == "gated" and rnd.kind != "memory" else rnd.round_id - 1)
        token_prompts = builder.prompts(d, dialog)
        assert [tokenizer.decode(ids) for ids in token_prompts] == texts
    assert (earlier_seen > 0) == (reminder != "none")  # history answers are legitimate context


def test_gated_reminders_only_where_the_question_refers_back(unique_world):
    """The toy's memory round asks about "the first picture" while the second is shown: only it gets a reminder;
    every other round's prompt is exactly the `none` prompt, and the gate is recorded per round."""
    tokenizer = AutoTokenizer.from_pretrained(unique_world.llm)
    settings = PromptSettings(reminder="gated", reminder_top_k=10, max_prompt_tokens=4096)
    gated, plain = PromptBuilder(settings, tokenizer), PromptBuilder(PromptSettings(), tokenizer)
    retrieved = PromptBuilder(settings, tokenizer, reminder="retrieved")
    for d, dialog in enumerate(load_visdial(unique_world.dialogs).dialogs):
        texts, gates = gated.texts_and_gates(dialog)
        assert gates == [rnd.kind == "memory" for rnd in dialog.rounds] and any(gates)
        for text, fire, bare, full in zip(texts, gates, plain.texts(dialog), retrieved.texts(dialog)):
            assert text == (full if fire else bare)
        assert gated.gates(d, dialog) == gates and retrieved.gates(d, dialog) == [None] * len(gates)
    never = PromptBuilder(PromptSettings(reminder="gated", gate=GateConfig(refers_back=False)), tokenizer)
    dialog = load_visdial(unique_world.dialogs).dialogs[0]
    assert never.texts(dialog) == plain.texts(dialog)


def test_training_targets_are_the_answers(unique_world):
    tokenizer = AutoTokenizer.from_pretrained(unique_world.llm)
    data = DialogData(BridgeDataSettings(dialogs=str(unique_world.dialogs), embeddings=str(unique_world.embeddings),
                                   encoder_id="toy"))
    builder = PromptBuilder(PromptSettings(), tokenizer)
    samples = data.samples("answered")
    batch = make_batch(data, builder, samples[:8], None, with_answers=True)
    for (d, r), prompt, answer in zip(samples[:8], batch.prompts, batch.answers):
        rnd = data.dialogs[d].rounds[r - 1]
        assert answer[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(answer[:-1]).strip() == rnd.answer  # target = the answer, not the question
        assert tokenizer.decode(prompt) == f"Q: {rnd.question}\nA:"
    # right alignment: the open turn is the last step and earlier steps hold earlier turns
    assert batch.turn[:, -1].tolist() == [r for _, r in samples[:8]]


def test_reminder_is_cut_to_fit_without_losing_the_question(unique_world):
    tokenizer = AutoTokenizer.from_pretrained(unique_world.llm)
    builder = PromptBuilder(PromptSettings(reminder="retrieved", reminder_top_k=10, max_prompt_tokens=40), tokenizer)
    dialog = load_visdial(unique_world.dialogs).dialogs[0]
    last = builder.texts(dialog)[-1]
    assert last.endswith(f"Q: {dialog.rounds[-1].question}\nA:")
    assert len(parse_reminder(last)) < len(dialog.rounds) - 1


def test_missing_embedding_row_is_an_error_not_a_zero_vector(tmp_path, unique_world):
    import json

    doc = json.loads(unique_world.dialogs.read_text())
    doc["data"]["dialogs"][1]["image_id"] = 987654  # a dialog the shards do not hold
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="987654"):
        DialogData(BridgeDataSettings(dialogs=str(bad), embeddings=str(unique_world.embeddings), encoder_id="toy"))
    with pytest.raises(ValueError, match="encoder"):
        DialogData(BridgeDataSettings(dialogs=str(unique_world.dialogs), embeddings=str(unique_world.embeddings),
                                encoder_id="imagebind_huge"))


def test_chat_format_prefix_and_answers_match_the_scored_options(unique_world):
    from services.train.bridge.infer import OptionTokens

    tokenizer = AutoTokenizer.from_pretrained(unique_world.llm)
    settings = PromptSettings(add_bos=False, prefix="<s>user\n", template="{question}</s>\nassistant\n",
                              answer_prefix="")
    builder = PromptBuilder(settings, tokenizer)
    assert tokenizer.decode(builder.bos) == "<s>user\n"  # everything before the soft tokens
    dialog = load_visdial(unique_world.dialogs).dialogs[0]
    assert builder.texts(dialog)[0] == f"{dialog.rounds[0].question}</s>\nassistant\n"
    answer = dialog.rounds[0].answer
    assert builder.answer(answer) == OptionTokens(builder, with_eos=True)(answer)  # trained == scored
    assert tokenizer.decode(builder.answer(answer)[:-1]) == answer  # no leading space with answer_prefix ""
    assert OptionTokens(builder, with_eos=False)(answer) == builder.answer(answer)[:-1]


def test_memory_rounds_are_repeated_and_pictures_numbered_in_order_of_appearance(unique_world):
    data = DialogData(BridgeDataSettings(dialogs=str(unique_world.dialogs), embeddings=str(unique_world.embeddings),
                                   encoder_id="toy"))
    once = data.samples("all", answered_only=True)
    thrice = data.samples("all", answered_only=True, repeat_memory=3)
    memory = [(d, r) for d, r in once if data.dialogs[d].rounds[r - 1].kind == "memory"]
    assert memory and len(thrice) == len(once) + 2 * len(memory)
    assert sorted(set(thrice)) == sorted(once) and all(thrice.count(s) == 3 for s in memory)
    assert data.samples("memory") == memory and not set(data.samples("current")) & set(memory)
    with pytest.raises(ConfigError, match="repeat_memory_rounds=0: must be >= 1"):
        BridgeDataSettings(repeat_memory_rounds=0)
    batch = make_batch(data, PromptBuilder(PromptSettings(), AutoTokenizer.from_pretrained(unique_world.llm)),
                       once, None, with_answers=False)
    for row, (d, r) in enumerate(once):
        dialog, active = data.dialogs[d], batch.turn[row] > 0
        shown = [dialog.rounds[t - 1].image_id for t in batch.turn[row][active].tolist()]
        expected = [dialog.image_ids().index(i) + 1 for i in shown]
        assert batch.picture[row][active].tolist() == expected and not batch.picture[row][~active].any()
    assert batch.picture.max() == 2  # the toy dialogs show two pictures
