"""LLM backends for data generation: Ollama (official `ollama` client), OpenAI-compatible (official `openai` client),
and a local transformers model (`hf_backend.py`). Every HTTP call goes through `with_retries`: 429, 5xx, timeouts and
connection errors are retried with exponential backoff; anything else, or the last failure, raises GenerationError
with the status, the URL and the fix. API keys come from the environment variable the config names and are
redacted from every message this module produces.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from shared.errors import InputError
from services.generate.config import BackendConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class GenerationError(InputError):
    """A backend failure the user must act on; the message says what happened, where, and the fix."""


@dataclass
class Request:
    system: str
    user: str
    images: list[tuple[bytes, str]] = field(default_factory=list)  # (file bytes, MIME type), in picture order


@dataclass
class HttpFailure:
    status: int | None  # None: no HTTP response (connection refused, timeout)
    detail: str
    retryable: bool
    fix: str | None = None  # when the status alone does not say what to do


def malformed(kind: str, exc: Exception) -> HttpFailure:
    """An answer that is not the API's JSON (a proxy's HTML page, another server on that port, a changed API)."""
    what = "not JSON" if isinstance(exc, json.JSONDecodeError) else f"not the {kind} API's shape ({type(exc).__name__})"
    return HttpFailure(200, f"the answer is {what}", False,
                       f"check that backend.base_url points at an {kind}-compatible server (and no proxy in between)")


def resolve_api_key(cfg: BackendConfig) -> str | None:
    """The key from the environment variable named by `backend.api_key_env` (None when no variable is named)."""
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env, "")
    if not key.strip():
        raise GenerationError(
            f"backend.api_key_env={cfg.api_key_env!r}: that environment variable is not set; export "
            f"{cfg.api_key_env}=<your key> before running (keys are never read from config files)")
    return key.strip()


def _fix(status: int | None, cfg: BackendConfig, retries: int) -> str:
    if status in (401, 403):
        if cfg.api_key_env:
            return f"the server rejected the key; put a valid key in the environment variable {cfg.api_key_env}"
        return "the server wants a key: set backend.api_key_env to the NAME of an environment variable holding it"
    if status == 404:
        pull = f" (ollama: `ollama pull {cfg.model}`)" if cfg.kind == "ollama" else ""
        return f"model {cfg.model!r} or this endpoint is unknown there; check backend.model{pull} and backend.base_url"
    if status == 429:
        return f"rate limited {retries + 1} times; slow down or raise backend.max_retries / backend.backoff_s"
    if status is not None and status >= 500:
        return f"the server failed {retries + 1} times; check its logs, then rerun (finished records are kept)"
    if status is None:
        serve = " (`ollama serve`)" if cfg.kind == "ollama" else ""
        return f"is the server running{serve} and backend.base_url right? (timeout: backend.timeout_s={cfg.timeout_s})"
    return "the server refused the request; check backend.model and the generation options"


class HttpBackend:
    """Shared retry/error handling of the HTTP backends; subclasses implement `_call` and `_classify`."""

    kind = "http"
    accepts_images = True
    endpoint = ""

    def __init__(self, cfg: BackendConfig, default_url: str, sleep: Callable[[float], None] = time.sleep):
        self.cfg, self.model = cfg, cfg.model
        self.base_url = (cfg.base_url or default_url).rstrip("/")
        self._secret = resolve_api_key(cfg)
        self._sleep = sleep

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def generate(self, request: Request) -> str:
        return self.with_retries(lambda: self._call(request))

    def with_retries(self, call: Callable[[], T]) -> T:
        url = self.base_url + self.endpoint
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - classified below; unknown errors re-raise unchanged
                failure = self._classify(exc)
                if failure is None:
                    raise
            status = "no response" if failure.status is None else f"HTTP {failure.status}"
            detail = self.redact(failure.detail)[:300]
            if not failure.retryable or attempt == self.cfg.max_retries:
                raise GenerationError(f"{self.kind} backend: {status} from {url}: {detail}",
                                      fix=failure.fix or _fix(failure.status, self.cfg, attempt)) from None
            delay = self.cfg.backoff_s * 2**attempt * (1 + 0.25 * random.random())
            log.warning("%s backend: %s from %s (%s); retry %d/%d in %.1f s", self.kind, status, url, detail,
                        attempt + 1, self.cfg.max_retries, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _call(self, request: Request) -> str:
        raise NotImplementedError

    def _classify(self, exc: Exception) -> HttpFailure | None:
        raise NotImplementedError


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


class OllamaBackend(HttpBackend):
    """Ollama's /api/chat through the official client; images go as base64 in the user message."""

    kind, endpoint = "ollama", "/api/chat"

    def __init__(self, cfg: BackendConfig, **kwargs):
        super().__init__(cfg, "http://127.0.0.1:11434", **kwargs)
        import ollama

        headers = {"Authorization": f"Bearer {self._secret}"} if self._secret else None
        self._client = ollama.Client(host=self.base_url, timeout=cfg.timeout_s, headers=headers)

    def _call(self, request: Request) -> str:
        user: dict = {"role": "user", "content": request.user}
        if request.images:
            user["images"] = [base64.b64encode(data).decode("ascii") for data, _ in request.images]
        options = {"temperature": self.cfg.temperature, "num_predict": self.cfg.max_new_tokens, "seed": self.cfg.seed}
        response = self._client.chat(model=self.model, messages=[{"role": "system", "content": request.system}, user],
                                     options=options, stream=False)
        return response.message.content or ""

    def _classify(self, exc: Exception) -> HttpFailure | None:
        import httpx
        import ollama

        if isinstance(exc, ollama.ResponseError):
            return HttpFailure(exc.status_code, str(exc.error), _retryable(exc.status_code))
        if isinstance(exc, (ConnectionError, httpx.TransportError)):  # the client turns ConnectError into this
            return HttpFailure(None, f"{type(exc).__name__}: {exc}", True)
        if isinstance(exc, (ValueError, TypeError, AttributeError)):  # JSON or pydantic: not Ollama's answer
            return malformed("ollama", exc)
        return None


class OpenAIBackend(HttpBackend):
    """Any OpenAI-compatible /v1/chat/completions through the official client (its own retries off)."""

    kind, endpoint = "openai", "/chat/completions"

    def __init__(self, cfg: BackendConfig, **kwargs):
        super().__init__(cfg, "https://api.openai.com/v1", **kwargs)
        import openai

        # Local servers often need no key, but the client insists on one: send a placeholder then.
        self._client = openai.OpenAI(base_url=self.base_url, api_key=self._secret or "no-key",
                                     timeout=cfg.timeout_s, max_retries=0)

    def _call(self, request: Request) -> str:
        content: str | list = request.user
        if request.images:
            content = [{"type": "text", "text": request.user}] + [
                {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}
                for data, mime in request.images]
        response = self._client.chat.completions.create(
            model=self.model, messages=[{"role": "system", "content": request.system},
                                        {"role": "user", "content": content}],
            max_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature, seed=self.cfg.seed)
        if not getattr(response, "choices", None):  # raised inside the retry loop: reported as a malformed answer
            raise ValueError("no choices")
        return response.choices[0].message.content or ""

    def _classify(self, exc: Exception) -> HttpFailure | None:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return HttpFailure(exc.status_code, str(exc.message), _retryable(exc.status_code))
        if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
            return HttpFailure(None, f"{type(exc).__name__}: {exc}", True)
        if isinstance(exc, (openai.APIResponseValidationError, ValueError, TypeError, AttributeError)):
            return malformed("openai", exc)
        return None

