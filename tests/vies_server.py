"""A local stand-in for VIES's REST API, speaking its wire format, for the tests.

One server on a free 127.0.0.1 port (a background thread, like the other stand-ins) answers
``POST /taxation_customs/vies/rest-api/check-vat-number`` as the European Commission's does:
a JSON body ``{"countryCode", "vatNumber", …}`` in; out, for an answer about the number,
``{"countryCode", "vatNumber", "requestDate", "valid", "requestIdentifier", "name", "address"}``
(``"---"`` where a member state discloses nothing), and for an error
``{"actionSucceed": false, "errorWrappers": [{"error": "MS_UNAVAILABLE", "message": …}]}`` with
the status the script chooses (VIES sends some of them with 200). A body without both fields is
``INVALID_INPUT`` (400).

Scripting: ``server.registry`` maps ``"NL000099998B57"`` (country code and number) to the
holder's ``(name, address)``; a number not in it is answered ``valid: false``.
``server.queue(Answer(...))`` queues how the next requests are answered instead (an error code
and status, a delay before answering — a client that hangs up first is counted in
``server.aborted`` —, or a bare status with a non-JSON body); once the queue is empty, answers
come from the registry. Every request is recorded (``server.requests``: path and JSON body).

``vies_settings(server)`` are the settings that point Kijko at it, through the egress guard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any, Self

from tests.net import QuietHandler, Script, ScriptedStandIn, wait_unless_hung_up

PATH = "/taxation_customs/vies/rest-api/check-vat-number"


@dataclass
class Answer:
    """How the server answers one request (instead of from the registry)."""

    #: A VIES error code (``MS_UNAVAILABLE``, ``TIMEOUT``, ``SERVICE_UNAVAILABLE``…), sent in
    #: ``errorWrappers`` with ``status``.
    error: str | None = None
    status: int = 200
    #: Seconds to wait before answering (a client that hangs up ends the wait).
    delay: float = 0.0
    #: A body that is not JSON (a proxy's error page), with ``status``.
    text: str | None = None


@dataclass
class Recorded:
    path: str
    body: Any


@dataclass
class _State(Script):
    registry: dict[str, tuple[str, str]]


class _Handler(QuietHandler):
    server: _Server

    def do_POST(self) -> None:
        state = self.server.state
        _, body = self.read_json()
        with state.lock:
            state.requests.append(Recorded(self.path, body))
            answer = state.script.popleft() if state.script else None
        if self.path != PATH:
            self._send(404, {"actionSucceed": False, "errorWrappers": [{"error": "NOT_FOUND"}]})
            return
        if answer is not None and answer.delay and not wait_unless_hung_up(self.connection, answer.delay):
            with state.lock:
                state.aborted += 1
            self.close_connection = True
            return
        if answer is not None and answer.text is not None:
            self._send(answer.status, answer.text)
        elif answer is not None and answer.error is not None:
            error = {"error": answer.error, "message": None}
            self._send(answer.status, {"actionSucceed": False, "errorWrappers": [error]})
        elif not isinstance(body, dict) or not body.get("countryCode") or not body.get("vatNumber"):
            self._send(400, {"actionSucceed": False, "errorWrappers": [{"error": "INVALID_INPUT"}]})
        else:
            self._send(200, self._check(state, body["countryCode"], body["vatNumber"]))

    @staticmethod
    def _check(state: _State, country: str, number: str) -> dict[str, Any]:
        holder = state.registry.get(f"{country}{number}")
        name, address = holder if holder is not None else ("---", "---")
        return {
            "countryCode": country,
            "vatNumber": number,
            "requestDate": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "valid": holder is not None,
            "requestIdentifier": "",
            "name": name,
            "address": address,
            "traderName": None,
            "traderStreet": None,
            "traderPostalCode": None,
            "traderCity": None,
            "traderCompanyType": None,
            "traderNameMatch": "NOT_PROCESSED",
            "traderStreetMatch": "NOT_PROCESSED",
            "traderPostalCodeMatch": "NOT_PROCESSED",
            "traderCityMatch": "NOT_PROCESSED",
            "traderCompanyTypeMatch": "NOT_PROCESSED",
        }

    def _send(self, status: int, document: Any) -> None:
        is_text = isinstance(document, str)
        payload = document.encode() if is_text else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if is_text else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    state: _State


class ViesServer(ScriptedStandIn):
    """VIES's ``check-vat-number`` on 127.0.0.1 (see the module)."""

    def __init__(self, registry: dict[str, tuple[str, str]] | None = None) -> None:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.state = _State(dict(registry or {}))
        super().__init__(httpd, httpd.state)
        self._state: _State = httpd.state
        self.url = f"http://127.0.0.1:{self.port}{PATH}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def registry(self) -> dict[str, tuple[str, str]]:
        return self._state.registry


def vies_settings(server: ViesServer, timeout: float = 2.0) -> dict[str, Any]:
    """Settings (for ``make_settings(**…)``) that point Kijko's VIES checks at ``server`` and let
    127.0.0.1 through the egress guard."""
    return {"egress_allow_cidrs": "127.0.0.0/8", "vies_url": server.url, "vies_timeout_seconds": timeout}
