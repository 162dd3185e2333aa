"""rank-text: what each memory condition shows the LM, the job's outputs, resuming, and its input checks."""
import json
from pathlib import Path

import pytest

from services.train.__main__ import main as train_cli
from services.train.rank_text.config import RankPromptSettings
from services.train.rank_text.prompts import dialog_reminders, gated_reminders, option_ids, prompt_text
from shared.dialog_text import render_conversation
from shared.predictions import read_predictions
from shared.visdial import Dialog, Round, load_visdial
from tests.unit.train.toy_world import save_tiny_llm

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json"


def dialog(rounds: int = 5) -> Dialog:
    """A dialog whose every answer is a unique word, so a leak of the open answer would show."""
    topics = ["dog", "grass", "frisbee", "sky", "dog"]
    return Dialog(7, "a dog on the grass", tuple(
        Round(t, f"what about the {topics[(t - 1) % 5]}", f"answer{t}", ("x", "y"), 0, 7) for t in range(1, rounds + 1)))


def test_each_condition_shows_what_it_names():
    d, settings = dialog(), RankPromptSettings(window=2, reminder_k=2)
    reminders = dialog_reminders(d, settings)
    text = {c: prompt_text(d, 4, c, settings, reminders) for c in ("none", "caption", "full", "window", "reminder")}
    assert text["none"] == "Q: what about the sky\nA:"
    assert text["caption"] == "Caption: a dog on the grass\nQ: what about the sky\nA:"
    assert text["full"] == render_conversation(d, 4)  # the project's conversation format
    assert text["window"] == ("Caption: a dog on the grass\nQ: what about the grass\nA: answer2\n"
                              "Q: what about the frisbee\nA: answer3\nQ: what about the sky\nA:")
    assert text["reminder"].startswith("Caption: a dog on the grass\n<reminder>\n[turn ")
    for t in text.values():
        assert "answer4" not in t and "answer5" not in t and t.endswith("Q: what about the sky\nA:")
    assert prompt_text(d, 1, "reminder", settings, reminders) == text["caption"].replace("sky", "dog")  # no block


@pytest.mark.parametrize("order", ["turn", "score"])
def test_reminders_hold_only_earlier_turns(order):
    d, settings = dialog(), RankPromptSettings(reminder_k=2, reminder_order=order)
    reminders = dialog_reminders(d, settings)
    assert reminders[1] == [] and all(len(reminders[t]) == min(t - 1, 2) for t in range(1, 6))
    assert all(m.turn < t for t in range(1, 6) for m in reminders[t])
    block = prompt_text(d, 5, "reminder", settings, reminders)
    turns = [int(line.split("]")[0][6:]) for line in block.splitlines() if line.startswith("[turn ")]
    assert 1 in turns  # "what about the dog" retrieves turn 1's dog question
    if order == "turn":
        assert turns == sorted(turns)
    else:
        assert turns == [m.turn for m in reminders[5]]


def test_gated_shows_the_reminder_only_where_the_gate_fires():
    base = dialog()
    rounds = list(base.rounds)
    rounds[3] = Round(4, "is he catching the frisbee", "answer4", ("x", "y"), 0, 7)  # a pronoun points back
    d, settings = Dialog(7, base.caption, tuple(rounds)), RankPromptSettings(reminder_k=2)
    gated, retrieved = gated_reminders(d, settings), dialog_reminders(d, settings)
    assert [r for r, items in gated.items() if items] == [4]
    assert prompt_text(d, 4, "gated", settings, gated) == prompt_text(d, 4, "reminder", settings, retrieved)
    assert "<reminder>" in prompt_text(d, 4, "gated", settings, gated)
    for r in (1, 2, 3, 5):
        assert prompt_text(d, r, "gated", settings, gated) == prompt_text(d, r, "caption", settings)
    settings.gate.pronouns = False  # the explicit-reference rules alone: nothing here refers back
    assert not any(gated_reminders(d, settings).values())


@pytest.fixture(scope="module")
def sample_llm(tmp_path_factory):
    """A tiny random Llama whose BPE is trained on the real sample's text (prompts stay within its positions)."""
    split = load_visdial(SAMPLE)
    corpus = [d.caption for d in split.dialogs] + [f"Q: {r.question}\nA: {r.answer}" for d in split.dialogs
                                                    for r in d.rounds]
    folder = tmp_path_factory.mktemp("llm")
    save_tiny_llm(folder, corpus)
    return folder


def test_options_end_with_the_chosen_marker(toy):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(toy.llm)
    eos = option_ids(tok, ["yes", "no it is not"], "eos")
    newline = option_ids(tok, ["yes", "no it is not"], "newline")
    assert all(o[-1] == tok.eos_token_id for o in eos)
    assert [o[:-1] for o in eos] == [o[: -len(tok("\n", add_special_tokens=False).input_ids)] for o in newline]
    assert tok.decode(newline[1]) == " no it is not\n"


def rank(tmp_path, llm, *extra) -> int:
    return train_cli(["rank-text", "--config", "configs/train/rank_text_visdial.yaml", f"lm.path={llm}",
                      f"outputs_root={tmp_path}", "run=r", "device=cpu", "num_threads=1", "data.image_ids=[284024,88394]",
                      "prompt.conditions=[none,caption,full,window,reminder,gated]", *extra])


@pytest.mark.slow
def test_job_writes_every_condition_and_resumes(tmp_path, sample_llm, capsys):
    assert rank(tmp_path, sample_llm) == 0
    run = tmp_path / "r"
    context = json.loads((run / "context.json").read_text())
    split = load_visdial(context["evaluate_data"])  # only the two ranked dialogs, in their order
    assert [d.image_id for d in split.dialogs] == [284024, 88394] and context["evaluate_data"] == str(run / "dialogs.json")
    for name, info in context["conditions"].items():
        rows = read_predictions(run / name / "predictions.jsonl", num_options=100)
        assert len(rows) == 20 and {(r["image_id"], r["round_id"]) for r in rows} == {
            (d.image_id, r.round_id) for d in split.dialogs for r in d.rounds}
        for row in rows:
            rnd = split.dialog_by_image()[row["image_id"]].rounds[row["round_id"] - 1]
            assert row["answer"] == rnd.options[row["ranks"].index(1)]
    c = context["conditions"]
    assert c["none"]["mean_prompt_tokens"] < c["caption"]["mean_prompt_tokens"] < c["window"]["mean_prompt_tokens"] \
        < c["full"]["mean_prompt_tokens"]
    assert c["reminder"]["rounds_with_reminder"] == 18  # every round but the first of each dialog
    gates = [r["gate"] for r in read_predictions(run / "gated" / "predictions.jsonl")]
    assert 0 < sum(gates) == c["gated"]["rounds_with_reminder"] < 18
    assert c["gated"]["rounds_computed_now"] == 0  # each gated prompt is a reminder or a caption prompt: reused
    # round 1 is the same prompt under caption/full/window/reminder: scored once, reused exactly
    assert c["full"]["rounds_computed_now"] == 18 and c["window"]["rounds_computed_now"] == 12
    assert "caption stands in for its picture" in (run / "summary.md").read_text()
    before = (run / "full" / "predictions.jsonl").read_bytes()
    assert rank(tmp_path, sample_llm) == 0  # resumed: nothing left to rank
    context = json.loads((run / "context.json").read_text())
    assert all(c["rounds_written_now"] == 0 for c in context["conditions"].values())
    assert (run / "full" / "predictions.jsonl").read_bytes() == before
    capsys.readouterr()
    assert rank(tmp_path, sample_llm, "prompt.reminder_k=2") == 2  # other settings: refuses to mix rows
    assert "config_hash" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("prompt.conditions=[full,memory]", "prompt.conditions"),
    ("prompt.conditions=[full,full]", "each once"),
    ("prompt.window=0", "prompt.window=0"),
    ("data.rounds=memory", "no memory/current kind"),
    ("data.image_ids=[1,2]", "not in"),
    ("lm.dtype=float16", "lm.dtype"),
])
def test_bad_settings_are_one_line_errors(tmp_path, override, message, capsys):
    assert rank(tmp_path, tmp_path / "no-llm", override) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
