"""The ``http`` skill type against Kijko's contract suite and a local HTTP server, through the
real egress guard (the server is on 127.0.0.1: runs that should reach it let 127.0.0.1/32
through, the way an operator would with KIJKO_EGRESS_ALLOW_CIDRS)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kijko_http_skill import HttpConfig, HttpSkillType

from kijko_core.plugins import SkillOutcome
from kijko_core.plugins.testing import SampleRun, SkillTypeContract

LOCAL = ("127.0.0.1/32",)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path.startswith("/status/"):
            status = int(self.path.rsplit("/", 1)[1])
            payload = b'{"error": "secret internal detail"}'
        elif self.path == "/big":
            status, payload = 200, b"x" * 5000
        elif self.path == "/slow":
            time.sleep(3)
            status, payload = 200, b"late"
        else:
            status = 200
            payload = json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "body": body,
                    "contentType": self.headers.get("Content-Type"),
                    "token": self.headers.get("X-Token"),
                }
            ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = _answer


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _echoed(expected: Mapping[str, Any]) -> Any:
    def check(outcome: SkillOutcome) -> None:
        answer = json.loads(outcome.output)
        assert {key: answer[key] for key in expected} == expected
        assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.cost) == (0, 0, None)

    return check


class TestHttpSkillKeepsTheContract(SkillTypeContract):
    @pytest.fixture
    def skill_type(self) -> HttpSkillType:
        return HttpSkillType()

    @pytest.fixture
    def sample_config(self) -> Mapping[str, Any]:
        return {"url": "https://example.com/hook", "method": "POST", "bodyTemplate": '{"q": "{{query}}"}'}

    @pytest.fixture
    def invalid_configs(self) -> Sequence[Mapping[str, Any]]:
        return [
            {},  # no url
            {"url": "ftp://example.com/file"},
            {"url": "https://example.com", "method": "DELETE"},
            {"url": "https://example.com", "headers": {"Connection": "close"}},
            {"url": "https://example.com", "headers": {"Transfer-Encoding": "chunked"}},
            {"url": "https://example.com", "headers": {"Bad Name": "x"}},
            {"url": "https://example.com", "headers": {"X-A": "one\r\nX-Injected: two"}},
            {"url": "https://example.com", "headers": {f"X-{i}": "v" for i in range(21)}},
            {"url": "https://example.com", "method": "GET", "bodyTemplate": "x"},
            {"url": "https://example.com", "timeoutSeconds": 0},
            {"url": "https://example.com", "maxResponseBytes": 10 * 1024 * 1024},
            {"url": "https://example.com", "unknownField": 1},
        ]

    @pytest.fixture
    def sample_run(self, server: str) -> SampleRun:
        return SampleRun(
            config={
                "url": f"{server}/hook?x=1",
                "method": "PUT",
                "headers": {"X-Token": "abc"},
                "bodyTemplate": '{"q": "{{query}}", "n": {{count}}, "who": "{{user.name}}"}',
            },
            input={"query": "hello", "count": 3, "user": {"name": "Ada"}},
            allow=LOCAL,
            check=_echoed(
                {
                    "method": "PUT",
                    "path": "/hook?x=1",
                    "body": '{"q": "hello", "n": 3, "who": "Ada"}',
                    "contentType": "application/json",
                    "token": "abc",
                }
            ),
        )

    @pytest.fixture
    def failing_runs(self, server: str) -> Sequence[tuple[SampleRun, str]]:
        return [
            # Without the allow setting, the local server is a private address: refused.
            (SampleRun(config={"url": f"{server}/hook"}), "ADDRESS_REFUSED"),
            (
                SampleRun(config={"url": "http://169.254.169.254/latest/meta-data"}, allow=("169.254.0.0/16",)),
                "ADDRESS_REFUSED",
            ),
            (SampleRun(config={"url": f"{server}/status/404", "method": "GET"}, allow=LOCAL), "HTTP_ERROR"),
            (SampleRun(config={"url": f"{server}/status/503"}, allow=LOCAL), "HTTP_ERROR"),
            (SampleRun(config={"url": f"{server}/big", "maxResponseBytes": 1000}, allow=LOCAL), "RESPONSE_TOO_LARGE"),
            (SampleRun(config={"url": f"{server}/slow", "timeoutSeconds": 0.5}, allow=LOCAL), "TIMEOUT"),
            (SampleRun(config={"url": "http://127.0.0.1:9/nothing"}, allow=LOCAL), "HTTP_UNREACHABLE"),
            # Over Kijko's rendered-size cap (kijko_core.skills.templates.RENDERED_MAX_CHARS).
            (
                SampleRun(config={"url": f"{server}/hook", "bodyTemplate": "{{big}}"}, input={"big": "x" * 400_001}),
                "TEMPLATE_ERROR",
            ),
        ]


def test_a_get_without_a_body_and_the_response_text_as_output(server: str) -> None:
    TestHttpSkillKeepsTheContract().test_run_returns_an_outcome(
        HttpSkillType(),
        SampleRun(
            config={"url": f"{server}/plain", "method": "GET"},
            allow=LOCAL,
            check=_echoed({"method": "GET", "body": "", "contentType": None}),
        ),
    )


def test_an_http_error_names_the_status_and_never_quotes_the_body(server: str) -> None:
    from kijko_core.plugins import SkillRunFailed

    with pytest.raises(SkillRunFailed) as failed:
        TestHttpSkillKeepsTheContract().test_run_returns_an_outcome(
            HttpSkillType(), SampleRun(config={"url": f"{server}/status/503"}, allow=LOCAL)
        )
    assert failed.value.message == "The endpoint answered 503 Service Unavailable"
    assert failed.value.retryable
    with pytest.raises(SkillRunFailed) as not_found:
        TestHttpSkillKeepsTheContract().test_run_returns_an_outcome(
            HttpSkillType(), SampleRun(config={"url": f"{server}/status/404"}, allow=LOCAL)
        )
    assert not not_found.value.retryable


def test_the_config_is_camel_case_on_the_wire() -> None:
    schema = HttpConfig.model_json_schema()
    assert {"url", "method", "headers", "bodyTemplate", "timeoutSeconds", "maxResponseBytes"} == set(
        schema["properties"]
    )
    assert schema["required"] == ["url"]
