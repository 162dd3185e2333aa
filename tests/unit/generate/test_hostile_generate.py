"""Hostile inputs to the generate service: broken servers, keys, settings and outputs, one line each.

Every case runs `python -m services.generate`'s main against loopback servers and checks with tests/hostile.py: exit
status 2, one `generate <verb>: error: ...; fix: ...` line naming the URL or file, no traceback, nothing replaced.
"""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.generate.__main__ import main
from tests.hostile import check, snapshot

CANARY = "sk-proj-CANARYkeyZ9xQ7-never-shown"


class RawServer:
    """Answers every POST with a fixed status, content type and body: what a proxy or another program might send."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json"):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def raw():
    started: list[RawServer] = []

    def start(*args, **kwargs) -> RawServer:
        started.append(RawServer(*args, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


def args(dataset, tmp_path, *extra: str) -> list[str]:
    return ["gen-base", "--config", "configs/generate/gen_base.yaml", f"data.dialogs={dataset / 'train.json'}",
            f"data.images={dataset / 'images'}", f"outputs_root={tmp_path / 'out'}", "backend.max_retries=0",
            *extra]


@pytest.mark.parametrize(("kind", "base", "body", "content_type"), [
    ("ollama", "", b"<html><body>502 Bad Gateway</body></html>", "text/html"),
    ("ollama", "", b'{"message": {"role": 7}}', "application/json"),
    ("ollama", "", b'{"unexpected": true}', "application/json"),
    ("openai", "/v1", b"not json at all", "application/json"),
    ("openai", "/v1", b'{"id": "x", "object": "chat.completion", "choices": []}', "application/json"),
])
def test_answers_that_are_not_the_api(capsys, raw, dataset, tmp_path, kind, base, body, content_type):
    server = raw(200, body, content_type)
    line = check(capsys, main, args(dataset, tmp_path, f"backend.kind={kind}", "backend.model=m",
                                    f"backend.base_url={server.url}{base}"), "generate gen-base",
                 server.url, "base_url")
    assert "Traceback" not in line


def test_a_refused_connection(capsys, dataset, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check(capsys, main, args(dataset, tmp_path, "backend.kind=ollama", f"backend.base_url=http://127.0.0.1:{port}"),
          "generate gen-base", f"127.0.0.1:{port}", "ollama serve")


def test_a_pasted_key_is_refused_and_never_shown_or_saved(capsys, dataset, tmp_path):
    line = check(capsys, main, args(dataset, tmp_path, "backend.kind=openai", f"backend.api_key_env={CANARY}"),
                 "generate gen-base", "backend.api_key_env is not the upper-case NAME", "export")
    assert CANARY not in line
    assert not (tmp_path / "out").exists()  # no config.yaml holds it


def test_the_key_variable_not_set(capsys, dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("VDM_NOT_SET", raising=False)
    check(capsys, main, args(dataset, tmp_path, "backend.kind=openai", "backend.api_key_env=VDM_NOT_SET"),
          "generate gen-base", "VDM_NOT_SET", "export")


@pytest.mark.parametrize(("override", "mentions"), [
    ("backend.kind=claude", ["'claude' is not one of"]),
    ("prompt.user=hello", ["must contain {conversation}"]),
    ("retrieval.k=0", ["retrieval.k=0"]),
    ("data.split=val", ["data.split is no longer a setting", "data.dialogs="]),
    ("out_dir=x", ["out_dir is no longer a setting", "run=<name>"]),
    ("max_records=-1", ["max_records"]),
])
def test_bad_settings(capsys, dataset, tmp_path, override, mentions):
    check(capsys, main, args(dataset, tmp_path, override), "generate gen-base", *mentions)


def test_missing_dialogs_file(capsys, dataset, tmp_path):
    check(capsys, main, [*args(dataset, tmp_path), f"data.dialogs={tmp_path / 'none.json'}"], "generate gen-base",
          "none.json")


def test_the_old_verb_spelling(capsys, dataset, tmp_path):
    check(capsys, main, ["gen_base", "--config", "configs/generate/gen_base.yaml"], "generate", "gen-base")


def test_resume_false_keeps_earlier_records(capsys, servers, dataset, tmp_path):
    server = servers("ollama", lambda body, headers: (200, "red"))
    common = args(dataset, tmp_path, "backend.kind=ollama", f"backend.base_url={server.url}")
    assert main(common) == 0
    capsys.readouterr()
    before = snapshot(tmp_path / "out")
    check(capsys, main, [*common, "resume=false"], "generate gen-base", "already holds records", "overwrite=true")
    assert snapshot(tmp_path / "out") == before
    check(capsys, main, [*common, "backend.temperature=0.7"], "generate gen-base", "other settings",
          "another run name")
    assert snapshot(tmp_path / "out") == before
