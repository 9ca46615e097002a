"""Stripe's request encoding and parameter checking.

Stripe's v1 API takes ``application/x-www-form-urlencoded`` bodies (and query strings for GET
and DELETE) with nested keys: ``metadata[org]=…``, ``items[0][price]=…``, ``expand[]=…`` (the SDK
always writes indexed arrays, ``expand[0]``). ``decode`` turns them into dicts and lists;
``check`` validates them against an endpoint's ``Spec`` and answers as Stripe does: an unknown
key is ``parameter_unknown`` (``Received unknown parameter: items[0][foo]``), a missing one
``parameter_missing``, a bad integer ``parameter_invalid_integer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


class StripeError(Exception):
    """An error answered in Stripe's shape: ``{"error": {"type", "code", "message", "param"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - Stripe's field name
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    """Stripe's 404 for an unknown id: ``No such customer: 'cus_…'``."""
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def invalid(param: str, message: str, code: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param)


def decode(raw: str) -> dict[str, Any]:
    """A form body or query string as nested dicts and lists (lists for numeric or ``[]`` keys)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        match = _KEY.match(key)
        if match is None:
            raise invalid(key, f"Invalid parameter name: {key}")
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for segment in path[:-1]:
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
        last = path[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


# A spec is a dict of parameter name -> type. Types: "str", "int", "bool", "ts" (a Unix time or
# "now"), "map" (metadata: any keys, string values, "" unsets), "strs" (a list of strings),
# a tuple of allowed strings (an enum), a nested dict, or a one-element list [nested spec].
Spec = dict[str, Any]


class Required:
    """A required parameter in a spec: ``{"currency": Required("str")}``."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind


def check(params: Mapping[str, Any], spec: Spec, prefix: str = "") -> dict[str, Any]:
    """``params`` validated against ``spec`` and converted (ints, booleans); Stripe's errors."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key not in spec:
            raise invalid(name, f"Received unknown parameter: {name}", "parameter_unknown")
        kind = spec[key]
        if isinstance(kind, Required):
            kind = kind.kind
        out[key] = _convert(value, kind, name)
    for key, kind in spec.items():
        if isinstance(kind, Required) and key not in out:
            name = f"{prefix}[{key}]" if prefix else key
            raise invalid(name, f"Missing required param: {name}.", "parameter_missing")
    return out


def _convert(value: Any, kind: Any, name: str) -> Any:
    if kind == "str":
        return _scalar(value, name)
    if kind == "int":
        text = _scalar(value, name)
        if text == "":
            return None
        if not re.fullmatch(r"-?\d+", text):
            raise invalid(name, f"Invalid integer: {text}", "parameter_invalid_integer")
        return int(text)
    if kind == "ts":
        text = _scalar(value, name)
        if text == "now":
            return "now"
        return _convert(text, "int", name)
    if kind == "bool":
        text = _scalar(value, name)
        if text not in ("true", "false"):
            raise invalid(name, f"Invalid boolean: {text}")
        return text == "true"
    if kind == "map":
        if value == "":
            return ""
        if not isinstance(value, dict):
            raise invalid(name, f"Invalid object: {name} must be a hash of strings")
        return {key: _scalar(item, f"{name}[{key}]") for key, item in value.items()}
    if kind == "strs":
        if value == "":
            return []
        if not isinstance(value, list):
            raise invalid(name, "Invalid array")
        return [_scalar(item, f"{name}[{index}]") for index, item in enumerate(value)]
    if isinstance(kind, tuple):
        text = _scalar(value, name)
        if text not in kind:
            choices = ", ".join(kind[:-1]) + f", or {kind[-1]}" if len(kind) > 1 else kind[0]
            raise invalid(name, f"Invalid {name}: must be one of {choices}")
        return text
    if isinstance(kind, list):
        if value == "":
            return []
        if not isinstance(value, list):
            raise invalid(name, "Invalid array")
        return [check(_hash(item, f"{name}[{index}]"), kind[0], f"{name}[{index}]") for index, item in enumerate(value)]
    if isinstance(kind, dict):
        if value == "":
            return ""
        return check(_hash(value, name), kind, name)
    raise AssertionError(f"bad spec for {name}: {kind!r}")


def _scalar(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise invalid(name, f"Invalid {name}: must be a string")
    return value


def _hash(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(name, f"Invalid object: {name} must be a hash")
    return value
