"""A local stand-in for Stripe's v1 API, speaking its wire format, for the billing tests.

One server on a free 127.0.0.1 port (a background thread, like the other stand-ins), driven by
the real ``stripe`` SDK: ``server.client()`` is a ``stripe.StripeClient`` with
``base_addresses={"api": server.url}`` (what ``KIJKO_STRIPE_API_BASE`` points at). It speaks the
API version of the installed SDK (``stripe.api_version``) and refuses any other
``Stripe-Version``. What it implements, and how faithfully, is in ``docs/billing-testing.md``
and decision 0146; the objects and their behaviour are in ``tests/stripe_stand_in/``.

Protocol, as Stripe's:

- form-encoded requests (nested ``a[b]=``, arrays ``items[0][price]=``); JSON answers with a
  ``Request-Id`` header; errors as ``{"error": {"type", "code", "message", "param"}}``.
- ``Authorization: Bearer sk_test_…``: a key not in ``server.api_keys`` gets Stripe's 401.
- unknown parameters: 400 ``parameter_unknown`` (so is one Stripe knows but the stand-in does
  not implement: the billing code must not rely on what is not here).
- ``Idempotency-Key`` on POSTs, scoped per API key: the same key and parameters replay the
  stored answer (``Idempotent-Replayed: true``); other parameters or another endpoint are 400
  ``idempotency_error``. Answers to requests that failed validation are not stored.
- ``expand[]`` for expandable fields, includable fields, ``data.…`` on lists, four levels.

Test controls (the customer's and the bank's side, and time):

- ``complete_checkout(session_id, method=…, outcome=…)`` — pay or set up on the hosted page.
- ``settle(payment_intent_id=None, succeeded=…)`` — a processing SEPA debit succeeds or fails
  (by default as the payment method's ``outcome`` given at checkout).
- ``advance_time(seconds)`` — the clock of every object without a test clock moves on; due
  renewals, cancellations at period end and schedule phases happen. Test clocks
  (``/v1/test_helpers/test_clocks``) move their own customers.
- ``dispute(payment_intent_id)`` — the customer's bank disputes the charge.
- ``fail_next(n, kind="500" | "reset")`` — an outage: the next ``n`` requests get a 500
  ``api_error`` or a reset connection, and nothing is done or stored for them.
- ``events`` / ``events_since(mark)`` — every state change as Stripe's event; ``deliver(…)``
  posts an event, signed (``Stripe-Signature``), to a URL over real HTTP — in any order, again,
  or later; ``signed(event, secrets)`` gives the body and header for an in-process client.

Usage::

    with StripeServer() as server:
        client = server.client()
        customer = client.v1.customers.create({"email": "a@example.com"})
        ...
"""

from __future__ import annotations

import json
import socket
import struct
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import stripe

from tests.net import HttpStandIn
from tests.stripe_stand_in import (
    billing,
    checkout,
    endpoints,  # noqa: F401 - importing it registers the endpoints
    forms,
    invoices,
    objects,
    routes,
    webhooks,
)
from tests.stripe_stand_in.expand import expand, render
from tests.stripe_stand_in.forms import StripeError
from tests.stripe_stand_in.state import Recorded, Saved, State, token

#: The API version the stand-in speaks: the one the installed SDK pins.
API_VERSION: str = stripe.api_version
DEFAULT_KEY = "sk_test_kijko_stand_in"

_NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer "
    "auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
    "details, or we can help at https://support.stripe.com/."
)


def _masked(key: str) -> str:
    prefix = key[:8] if key.startswith(("sk_", "rk_", "pk_")) else ""
    return prefix + "*" * max(0, len(key) - len(prefix) - 4) + key[-4:]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        path, _, query = self.path.partition("?")
        headers = {name.lower(): value for name, value in self.headers.items()}
        request_id = f"req_{token(14)}"
        record = Recorded(method, path, {}, headers)
        with state.lock:
            state.requests.append(record)
            outage = state.outages.pop(0) if state.outages else None
        if outage == "reset":
            record.status = -1
            self._reset()
            return
        if outage == "500":
            record.status = 500
            error = StripeError(500, "An unknown error occurred (a simulated Stripe outage).", type="api_error")
            self._json(500, error.body(request_id), {"Request-Id": request_id})
            return
        status, body, extra = self._answer(state, method, path, query, raw, headers, request_id, record)
        record.status = status
        self._json(status, body, {"Request-Id": request_id, **extra})

    def _answer(
        self,
        state: State,
        method: str,
        path: str,
        query: str,
        raw: str,
        headers: dict[str, str],
        request_id: str,
        record: Recorded,
    ) -> tuple[int, Any, dict[str, str]]:
        extra = {"Stripe-Version": state.api_version}
        try:
            key = self._api_key(state, headers)
            version = headers.get("stripe-version")
            if version and version != state.api_version:
                raise StripeError(
                    400,
                    f"The Stripe stand-in speaks API version {state.api_version} only; this request "
                    f"asked for {version}.",
                    param="Stripe-Version",
                )
            content_type = headers.get("content-type", "").split(";")[0].strip()
            if method == "POST" and raw and content_type != "application/x-www-form-urlencoded":
                raise StripeError(
                    400,
                    "Invalid request (check that your POST content type is application/x-www-form-urlencoded). "
                    "If you have any questions, we can help at https://support.stripe.com/.",
                )
            params = forms.decode(query if method in ("GET", "DELETE") else raw)
            record.params = params
            chosen, ids = self._route(method, path)
            idempotency_key = headers.get("idempotency-key") if method == "POST" else None
            with state.lock:
                if idempotency_key:
                    saved = state.idempotency.get((key, idempotency_key))
                    if saved is not None:
                        self._check_same(saved, method, path, params, idempotency_key)
                        record.replayed = True
                        return (
                            saved.status,
                            saved.body,
                            {
                                **extra,
                                "Idempotent-Replayed": "true",
                                "Original-Request": saved.request_id,
                                "Idempotency-Key": idempotency_key,
                            },
                        )
                    extra["Idempotency-Key"] = idempotency_key
                checked = forms.check(params, chosen.spec)
                state.current_request = {"id": request_id, "idempotency_key": idempotency_key}
                try:
                    billing.run_until(state, state.wall_now(), None)
                    answer = chosen.handler(state, checked, ids)
                    status, body = 200, expand(state, render(state, answer), checked.get("expand") or [])
                except StripeError as error:
                    status, body = error.status, error.body(request_id)
                finally:
                    state.current_request = None
                if idempotency_key:
                    state.idempotency[(key, idempotency_key)] = Saved(method, path, params, status, body, request_id)
                return status, body, extra
        except StripeError as error:
            return error.status, error.body(request_id), {**extra, **error.headers}
        except Exception as bug:  # a fault of the stand-in: say so loudly, never as a reset
            traceback.print_exc()
            error = StripeError(500, f"Stripe stand-in bug: {bug!r}", type="api_error")
            return 500, error.body(request_id), {**extra, "Stripe-Should-Retry": "false"}

    @staticmethod
    def _api_key(state: State, headers: dict[str, str]) -> str:
        authorization = headers.get("authorization", "")
        key = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        if not key:
            raise StripeError(401, _NO_KEY)
        if key not in state.api_keys:
            raise StripeError(401, f"Invalid API Key provided: {_masked(key)}")
        return key

    @staticmethod
    def _route(method: str, path: str) -> tuple[routes.Route, list[str]]:
        # Literal paths first: ``/v1/customers/search`` is not the customer "search".
        for candidate in sorted(routes.ROUTES, key=lambda r: r.pattern.groups):
            if candidate.method == method and (match := candidate.pattern.match(path)):
                return candidate, list(match.groups())
        raise StripeError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we "
            "can help at https://support.stripe.com/.",
        )

    @staticmethod
    def _check_same(saved: Saved, method: str, path: str, params: Any, key: str) -> None:
        if (saved.method, saved.path) != (method, path):
            raise StripeError(
                400,
                f"Keys for idempotent requests can only be used for the same endpoint they were first "
                f"used for ('{saved.path}' vs '{path}'). Try using a key other than '{key}' if you meant "
                "to execute a different request.",
                type="idempotency_error",
            )
        if saved.params != params:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were "
                f"first used with. Try using a key other than '{key}' if you meant to execute a different "
                "request.",
                type="idempotency_error",
            )

    def _reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0): the client sees 'connection reset by peer'."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _json(self, status: int, document: Any, headers: dict[str, str]) -> None:
        payload = json.dumps(document, indent=2).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    state: State
    request_queue_size = 128  # bursts of parallel checkouts in the double-click tests

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # only connection errors get here (a reset on purpose); faults answer 500 above


class StripeServer(HttpStandIn):
    """Stripe's v1 API on 127.0.0.1 (see the module)."""

    def __init__(self, api_keys: set[str] | None = None) -> None:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.state = State(api_version=API_VERSION, api_keys=set(api_keys or {DEFAULT_KEY}))
        super().__init__(httpd)
        self.state = httpd.state
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, api_key: str = DEFAULT_KEY, **options: Any) -> stripe.StripeClient:
        """The real SDK pointed at the stand-in (``KIJKO_STRIPE_API_BASE`` = ``server.url``)."""
        options.setdefault("max_network_retries", 0)
        return stripe.StripeClient(api_key, base_addresses={"api": self.url}, **options)

    @property
    def api_keys(self) -> set[str]:
        return self.state.api_keys

    # --- what happened -----------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.events)

    def mark(self) -> int:
        """A position in the event log, for ``events_since``."""
        with self.state.lock:
            return len(self.state.events)

    def events_since(self, mark: int, *types: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return [e for e in self.state.events[mark:] if not types or e["type"] in types]

    def object(self, object_id: str) -> dict[str, Any]:
        """An object as the API would show it now."""
        with self.state.lock:
            return render(self.state, self.state.objects[object_id])

    # --- the customer's side, the bank's side, time --------------------------------------------

    def complete_checkout(
        self,
        session_id: str,
        method: str = "card",
        outcome: str = "succeed",
        *,
        email: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """The customer completes Checkout with ``method`` (``card``, ``ideal``, ``sepa_debit``);
        ``outcome`` (``succeed``/``fail``) is what that payment method's payments do later."""
        if method not in checkout.METHODS:
            raise ValueError(method)
        with self.state.lock:
            checkout.complete(self.state, self.state.objects[session_id], method, outcome, email, name)
            return render(self.state, self.state.objects[session_id])

    def settle(self, payment_intent_id: str | None = None, *, succeeded: bool | None = None) -> list[str]:
        """The bank answers for ``payment_intent_id``, or for every processing payment: as
        ``succeeded`` says, or (None) as the payment method's scripted ``outcome``."""
        with self.state.lock:
            if payment_intent_id is None:
                pending = [p for p in self.state.of_kind("payment_intent") if p["status"] == "processing"]
            else:
                pending = [self.state.objects[payment_intent_id]]
            for intent in reversed(pending):  # oldest first
                scripted = self.state.hidden[intent["payment_method"]].get("outcome", "succeed") == "succeed"
                invoices.settle(self.state, intent, scripted if succeeded is None else succeeded)
            return [intent["id"] for intent in pending]

    def advance_time(self, seconds: int) -> int:
        """Move the clock of every object without a test clock on by ``seconds``; what falls
        due happens in order. Returns the new time."""
        with self.state.lock:
            self.state.offset += seconds
            billing.run_until(self.state, self.state.wall_now(), None)
            return self.state.wall_now()

    @property
    def now(self) -> int:
        with self.state.lock:
            return self.state.wall_now()

    def dispute(self, payment_intent_id: str, reason: str = "fraudulent") -> dict[str, Any]:
        with self.state.lock:
            charge = self.state.objects[self.state.objects[payment_intent_id]["latest_charge"]]
            charge["disputed"] = True
            dispute = objects.dispute(self.state, charge, reason)
            self.state.emit("charge.dispute.created", dispute)
            return render(self.state, dispute)

    def fail_next(self, count: int, kind: str = "500") -> None:
        """An outage: the next ``count`` requests are answered 500 (``kind="500"``) or have
        their connection reset (``"reset"``) without being executed."""
        if kind not in ("500", "reset"):
            raise ValueError(kind)
        with self.state.lock:
            self.state.outages.extend([kind] * count)

    # --- webhooks ------------------------------------------------------------------------------

    @staticmethod
    def signed(event: dict[str, Any], secrets: str | list[str], timestamp: int | None = None) -> tuple[bytes, str]:
        """The body and ``Stripe-Signature`` header Stripe would send for ``event``."""
        body = webhooks.payload(event)
        return body, webhooks.signature(body, [secrets] if isinstance(secrets, str) else secrets, timestamp)

    @staticmethod
    def deliver(event: dict[str, Any], url: str, secrets: str | list[str], **options: Any) -> webhooks.Delivery:
        """POST ``event`` to ``url``, signed; see ``webhooks.deliver`` for forging options."""
        return webhooks.deliver(url, event, [secrets] if isinstance(secrets, str) else secrets, **options)

    def deliver_all(
        self, url: str, secrets: str | list[str], events: list[dict[str, Any]] | None = None, delay: float = 0.0
    ) -> list[webhooks.Delivery]:
        """Deliver ``events`` (default: all so far) in the given order, ``delay`` seconds apart."""
        deliveries = []
        for event in self.events if events is None else events:
            deliveries.append(self.deliver(event, url, secrets))
            if delay:
                time.sleep(delay)
        return deliveries
