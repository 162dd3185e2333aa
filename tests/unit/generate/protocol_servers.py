"""Small HTTP servers on 127.0.0.1 that speak the Ollama /api/chat and OpenAI /v1/chat/completions protocols.

The real Ollama server (and any OpenAI endpoint) cannot be installed or reached here, so the backends are tested
against these: they parse the request bodies the official clients send, answer with the documented response shapes
and status codes, and record every request (path, headers, JSON body) for the tests to inspect.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Given the request body, return (status, reply text or error message).
Script = Callable[[dict, dict], tuple[int, str]]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class ProtocolServer:
    protocol: str  # "ollama" | "openai"
    script: Script
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append(Recorded(self.path, headers, body))
                expected = "/api/chat" if server.protocol == "ollama" else "/v1/chat/completions"
                if self.path != expected:
                    return self._send(404, {"error": f"unknown path {self.path}"})
                status, text = server.script(body, headers)
                self._send(status, server.reply(body, text) if status == 200 else server.error(status, text))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}" + ("/v1" if self.protocol == "openai" else "")

    def reply(self, body: dict, text: str) -> dict:
        if self.protocol == "ollama":  # https://github.com/ollama/ollama/blob/main/docs/api.md#chat-request-no-streaming
            return {"model": body.get("model"), "created_at": "2025-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": text}, "done": True, "done_reason": "stop"}
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    def error(self, status: int, message: str) -> dict:
        if self.protocol == "ollama":
            return {"error": message}
        return {"error": {"message": message, "type": "invalid_request_error", "code": status}}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def user_text(body: dict) -> str:
    """The user message's text in either protocol."""
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def sent_images(body: dict) -> list[str]:
    """Base64 payloads of the images in the user message, in order."""
    user: Any = body["messages"][-1]
    if "images" in user:
        return list(user["images"])
    if isinstance(user["content"], list):
        return [p["image_url"]["url"].split(",", 1)[1] for p in user["content"] if p["type"] == "image_url"]
    return []
