"""Local stand-ins for the LLM providers, speaking their real wire formats, for the tests.

One server on a free 127.0.0.1 port (a background thread, like the other stand-ins) answers
both protocols Kijko uses:

- OpenAI Chat Completions, ``POST /v1/chat/completions`` (``Authorization: Bearer <key>``):
  ``choices[0].message.content`` and ``usage {prompt_tokens, completion_tokens, total_tokens}``;
  errors as ``{"error": {"message", "type", "param", "code"}}``.
- Anthropic Messages, ``POST /v1/messages`` (``x-api-key`` or a bearer token, and the
  ``anthropic-version`` header, required):
  ``content: [{"type": "text", "text"}]`` and ``usage {input_tokens, output_tokens}``; errors as
  ``{"type": "error", "error": {"type", "message"}}`` — 529 ``overloaded_error`` included.

The SDKs are pointed at it with ``base_url``: ``server.openai_url`` (``…/v1``, the OpenAI SDK
appends ``/chat/completions``) and ``server.anthropic_url`` (the Anthropic SDK appends
``/v1/messages``). Tests reaching it through Kijko's egress guard set
``KIJKO_EGRESS_ALLOW_CIDRS=127.0.0.0/8``.

Scripting: ``server.queue(Answer(...))`` queues the answers of the next requests, in order (any
path); once the queue is empty every request gets ``server.default``. An answer chooses the reply
text, usage, a delay before answering (during which a client that hangs up is noticed and
counted in ``server.aborted``), or an error status with an optional ``Retry-After``.
``server.api_keys`` are the keys accepted (a request with another key gets the provider's 401).
Every request is recorded (``server.requests``: path, lower-cased headers, JSON body, arrival
time on the monotonic clock and when its answer was sent).

``provider_settings(server)`` are the settings that point Kijko's platform keys at it.

Usage::

    with LlmServer(api_keys={"sk-test"}) as server:
        server.queue(Answer(status=429, retry_after="1"), Answer(text="hi", prompt_tokens=3))
        ...
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, Self

from tests.net import QuietHandler, Script, ScriptedStandIn, wait_unless_hung_up

#: The error ``type`` each provider puts in its body, by status.
_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Answer:
    """How the server answers one request."""

    text: str = "Hello from the stand-in"
    prompt_tokens: int = 12
    completion_tokens: int = 7
    #: Seconds to wait before answering (a hung-up client ends the wait and counts as aborted).
    delay: float = 0.0
    #: 200, or an error status answered with the provider's error body.
    status: int = 200
    retry_after: str | None = None
    #: The error message in an error body (a default per status otherwise).
    message: str | None = None


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any
    #: ``time.monotonic()`` when the request arrived, and when its answer was written (None if
    #: the client hung up first).
    arrived: float
    answered: float | None = None
    #: The client's port: the same for requests that reused a kept-alive connection.
    client_port: int = 0


@dataclass
class _State(Script):
    api_keys: set[str]
    default: Answer


class _Handler(QuietHandler):
    server: _Server

    def do_POST(self) -> None:
        state = self.server.state
        raw, body = self.read_json()
        if body is None:
            body = raw.decode("utf-8", "replace")
        record = Recorded(
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            time.monotonic(),
            client_port=self.client_address[1],
        )
        with state.lock:
            state.requests.append(record)
            answer = state.script.popleft() if state.script else state.default
        if self.path.startswith("/v1/chat/completions"):
            protocol = "openai"
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        elif self.path.startswith("/v1/messages"):
            protocol = "anthropic"
            # ``x-api-key``, or a bearer token (what the 2.x SDK sends).
            key = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix("Bearer ")
        else:
            self._json(404, {"error": {"message": "Not found", "type": "invalid_request_error", "code": None}})
            return
        if answer.delay and not wait_unless_hung_up(self.connection, answer.delay):
            with state.lock:
                state.aborted += 1
            self.close_connection = True
            return
        if protocol == "anthropic" and not self.headers.get("anthropic-version"):
            self._error(protocol, 400, "anthropic-version: header is required", None)
        elif key not in state.api_keys:
            self._error(protocol, 401, "Invalid API key", None)
        elif answer.status != 200:
            self._error(protocol, answer.status, answer.message, answer.retry_after)
        elif protocol == "openai":
            self._json(200, self._openai(body, answer))
        else:
            self._json(200, self._anthropic(body, answer))
        record.answered = time.monotonic()

    @staticmethod
    def _openai(body: Any, answer: Answer) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "") if isinstance(body, dict) else "",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            },
        }

    @staticmethod
    def _anthropic(body: Any, answer: Answer) -> dict[str, Any]:
        return {
            "id": f"msg_{time.monotonic_ns()}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "") if isinstance(body, dict) else "",
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens},
        }

    def _error(self, protocol: str, status: int, message: str | None, retry_after: str | None) -> None:
        text = message or f"stand-in error {status}"
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if protocol == "openai":
            kind, code = _OPENAI_ERRORS.get(status, ("server_error", None))
            self._json(status, {"error": {"message": text, "type": kind, "param": None, "code": code}}, headers)
        else:
            kind = _ANTHROPIC_ERRORS.get(status, "api_error")
            self._json(status, {"type": "error", "error": {"type": kind, "message": text}}, headers)

    def _json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    state: _State
    request_queue_size = 128  # a worker opens dozens of connections at once (the benchmark)


class LlmServer(ScriptedStandIn):
    """An OpenAI Chat Completions + Anthropic Messages stand-in on 127.0.0.1 (see the module)."""

    def __init__(self, api_keys: set[str] | None = None, default: Answer | None = None) -> None:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.state = _State(set(api_keys if api_keys is not None else {"sk-test"}), default or Answer())
        super().__init__(httpd, httpd.state)
        self._state: _State = httpd.state
        self.url = f"http://127.0.0.1:{self.port}"
        self.openai_url = f"{self.url}/v1"
        self.anthropic_url = self.url

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_keys(self) -> set[str]:
        return self._state.api_keys

    @property
    def default(self) -> Answer:
        return self._state.default

    @default.setter
    def default(self, answer: Answer) -> None:
        self._state.default = answer


def provider_settings(server: LlmServer, api_key: str = "sk-test") -> dict[str, Any]:
    """Settings (for ``make_settings(**…)``) that point the platform's providers at ``server``
    with ``api_key``, let 127.0.0.1 through the egress guard and keep retry waits short."""
    return {
        "egress_allow_cidrs": "127.0.0.0/8",
        "openai_api_key": api_key,
        "openai_base_url": server.openai_url,
        "anthropic_api_key": api_key,
        "anthropic_base_url": server.anthropic_url,
        "llm_retry_base_seconds": 0.01,
    }
