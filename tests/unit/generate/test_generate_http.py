"""The Ollama and OpenAI-compatible backends through their official clients, against loopback protocol servers.

The real Ollama server cannot be installed here (and no OpenAI endpoint is reachable), so tests/unit/generate/
protocol_servers.py serves /api/chat and /v1/chat/completions on 127.0.0.1 with the documented request/response
shapes and status codes. Covered: images as base64, the <reminder> block of retrieved past turns, retries with
backoff on 500, a clear error on 401 that never shows the key, a refused connection, and resume after a crash.
"""
from __future__ import annotations

import base64
import json
import logging
import socket

import pytest

from services.generate.__main__ import main
from services.generate.backends import GenerationError
from services.generate.run import run
from services.generate.schema import check_record
from shared.predictions import read_predictions
from shared.reminder import parse_reminder
from tests.unit.generate.conftest import DIALOGS, ROUNDS, make_config
from tests.unit.generate.protocol_servers import sent_images, user_text

REASONED = "<reminder>\n[turn 1] Q: what color is the shape? A: it was noted\n</reminder>\nred"
ALL_ANSWERS = [a for d in DIALOGS for _, a, *_ in d["rounds"]]


def _open_answer_leaks(body: dict) -> list[str]:
    """Answers of rounds at or after the open one that appear in the prompt (must be none)."""
    text = user_text(body)
    asked = text.rsplit("Q: ", 1)[1]
    dialog = next(d for d in DIALOGS if any(q == asked.split("\n")[0] for q, *_ in d["rounds"]))
    open_index = next(i for i, (q, *_) in enumerate(dialog["rounds"]) if q == asked.split("\n")[0])
    return [a for _, a, *_ in dialog["rounds"][open_index:] if a in text]


def test_ollama_gen_reason_sends_images_and_reminders_and_retries_a_500(dataset, tmp_path, servers, caplog):
    calls = {"n": 0}

    def script(body, headers):
        calls["n"] += 1
        return (500, "model runner crashed") if calls["n"] == 1 else (200, REASONED)

    server = servers("ollama", script)
    cfg = make_config(dataset, tmp_path / "out", kind="ollama", model="gemma3:27b", base_url=server.url)
    cfg.retrieval.enabled, cfg.retrieval.k = True, 2
    with caplog.at_level(logging.WARNING):
        summary = run("gen_reason", cfg)
    assert summary.written == ROUNDS and calls["n"] == ROUNDS + 1
    assert "HTTP 500" in caplog.text and "retry 1/2" in caplog.text
    records = [json.loads(x) for x in (tmp_path / "out/gen/records.jsonl").read_text().splitlines()]
    assert all(check_record(r) is None for r in records) and records[0]["answer"] == "red"
    bodies = [r.body for r in server.requests[1:]]
    assert all(b["model"] == "gemma3:27b" and b["options"]["num_predict"] == cfg.backend.max_new_tokens for b in bodies)
    assert all(_open_answer_leaks(b) == [] for b in bodies)
    # the memory round of dialog 2 is on picture 2: both pictures go, in order, as the files' bytes
    last = bodies[-1]
    png = [(dataset / "images" / f"{i}.png").read_bytes() for i in (21, 22)]
    assert [base64.b64decode(s) for s in sent_images(last)] == png
    assert records[-1]["images"] == [21, 22]
    reminder = parse_reminder(user_text(last))
    assert [m.turn for m in reminder] and all(m.turn < 3 for m in reminder)
    assert {m.answer for m in reminder} <= {"ans-azure-21-1", "ans-square-21-2"}


def test_gated_retrieval_sends_a_reminder_only_with_the_memory_question(dataset, tmp_path, servers):
    server = servers("ollama", lambda body, headers: (200, REASONED))
    cfg = make_config(dataset, tmp_path / "out", kind="ollama", model="gemma3:27b", base_url=server.url)
    cfg.retrieval.enabled, cfg.retrieval.gated = True, True
    assert run("gen_reason", cfg).written == ROUNDS
    texts = [user_text(r.body) for r in server.requests]
    with_block = ["<reminder>" in t for t in texts]
    assert sum(with_block) == 1 and "first picture" in texts[with_block.index(True)].split("</reminder>")[1]
    assert all(t.lstrip().startswith("Caption") or "<reminder>" in t for t in texts)  # "" in place of the block


def test_openai_gen_eval_with_key_writes_predictions(dataset, tmp_path, servers, monkeypatch):
    monkeypatch.setenv("VDM_TEST_KEY", "sk-test-0123456789")
    server = servers("openai", lambda body, headers: (200, REASONED))
    cfg = make_config(dataset, tmp_path / "out", split="val", kind="openai", model="gpt-test", base_url=server.url,
                      api_key_env="VDM_TEST_KEY", images="current")
    summary = run("gen_eval", cfg)
    assert summary.written == ROUNDS
    assert {r.headers["authorization"] for r in server.requests} == {"Bearer sk-test-0123456789"}
    assert all(len(sent_images(r.body)) == 1 for r in server.requests)
    rows = read_predictions(tmp_path / "out/gen/predictions.jsonl")
    assert len(rows) == ROUNDS and {(r["answer"], r["raw"]) for r in rows} == {("red", REASONED)}
    assert "sk-test" not in (tmp_path / "out/gen/config.yaml").read_text()


def test_openai_401_is_a_clear_error_and_never_shows_the_key(dataset, tmp_path, servers, monkeypatch, capsys, caplog):
    secret = "sk-live-SECRET-4242"
    monkeypatch.setenv("VDM_TEST_KEY", secret)

    def echo_key(body, headers):  # like real APIs that echo (part of) the rejected key
        return 401, f"Incorrect API key provided: {headers.get('authorization', '')}"

    server = servers("openai", echo_key)
    with caplog.at_level(logging.DEBUG):
        rc = main(["gen-base", f"data.dialogs={dataset / 'train.json'}", f"data.images={dataset / 'images'}",
                   "backend.kind=openai", "backend.model=gpt-test", f"backend.base_url={server.url}",
                   "backend.api_key_env=VDM_TEST_KEY", f"outputs_root={tmp_path / 'out'}"])
    out = capsys.readouterr()
    assert rc == 2 and len(server.requests) == 1  # 401 is not retried; a bad key is the user's to fix
    assert "HTTP 401" in out.err and f"{server.url}/chat/completions" in out.err and "VDM_TEST_KEY" in out.err
    everything = out.out + out.err + caplog.text + "".join(p.read_text() for p in (tmp_path / "out").rglob("*.*"))
    assert secret not in everything and "***" in out.err


def test_missing_key_variable_and_refused_connection(dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("VDM_UNSET_KEY", raising=False)
    cfg = make_config(dataset, tmp_path / "out", kind="openai", base_url="http://127.0.0.1:9/v1",
                      api_key_env="VDM_UNSET_KEY")
    with pytest.raises(GenerationError, match="VDM_UNSET_KEY.*not set"):
        run("gen_base", cfg)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_config(dataset, tmp_path / "out2", kind="ollama", base_url=f"http://127.0.0.1:{port}",
                      max_retries=1)
    with pytest.raises(GenerationError, match=r"no response from http://127.0.0.1:\d+/api/chat.*ollama serve"):
        run("gen_base", cfg)


def test_resume_after_a_crash_has_no_duplicates_and_no_loss(dataset, tmp_path, servers):
    state = {"ok": 0, "healthy": False}

    def script(body, headers):
        if not state["healthy"] and state["ok"] >= 4:
            return 503, "server went away"
        state["ok"] += 1
        return 200, "red"

    server = servers("ollama", script)
    cfg = make_config(dataset, tmp_path / "out", kind="ollama", base_url=server.url, max_retries=0)
    with pytest.raises(GenerationError, match="HTTP 503"):
        run("gen_base", cfg)  # dies after 4 records
    path = tmp_path / "out/gen/records.jsonl"
    assert len(path.read_text().splitlines()) == 4
    with path.open("a") as f:
        f.write('{"id": "train:21:1", "image_id": 21, "round_')  # a torn line from a kill mid-write
    state["healthy"] = True
    summary = run("gen_base", cfg)
    assert (summary.skipped, summary.written) == (4, ROUNDS - 4)
    ids = [json.loads(x)["id"] for x in path.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == ROUNDS
    assert sorted(ids) == sorted(f"train:{d['image_id']}:{r}" for d in DIALOGS for r in range(1, 4))
    assert run("gen_base", cfg).written == 0
