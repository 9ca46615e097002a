"""Mail templates: a logic-less subset of mustache written here in a few lines (decision 0054).

A template is two files in ``kijko_core/mail/templates/``: ``<name>.txt`` (its first line is
``Subject: …``, then a blank line, then the plain-text body) and ``<name>.html``. The only
syntax is

- ``{{name}}`` — a value (HTML-escaped in the ``.html`` part, as is in the text part and the
  subject);
- ``{{#items}} … {{/items}}`` — the part repeated for each mapping of the list ``items``;
  inside, names are looked up in the item first, then outside. A section tag alone on its
  line takes the line with it, so loops in the text part do not leave blank lines.

Nothing else: no conditionals, no raw (unescaped) output, no partials, no expressions. A
name the values do not give, a value of the wrong kind or any other ``{{`` is an error.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# A section tag alone on its line (with its newline), a section tag, a value tag.
_TAG = re.compile(
    rf"(?m)^[ \t]*\{{\{{(?P<line_kind>[#/])\s*(?P<line_name>{_NAME})\s*\}}\}}[ \t]*(?:\r?\n|\Z)"
    rf"|\{{\{{(?P<kind>[#/]?)\s*(?P<name>{_NAME})\s*\}}\}}"
)
_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SUBJECT = "Subject: "
#: The longest subject (a line of RFC 5322; the outbox column's limit).
SUBJECT_MAX = 998
TEMPLATES = resources.files("kijko_core.mail") / "templates"


class TemplateError(ValueError):
    """A template that cannot be rendered: a syntax error, an unknown template, or values
    that do not fit it. A programming error (never shown to a user)."""


@dataclass(frozen=True, slots=True)
class _Var:
    name: str


@dataclass(frozen=True, slots=True)
class _Section:
    name: str
    body: tuple[_Node, ...]


_Node = str | _Var | _Section


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template (pure data; rendering never reads files)."""

    name: str
    subject: tuple[_Node, ...]
    text: tuple[_Node, ...]
    html: tuple[_Node, ...]

    def render(self, values: Mapping[str, Any]) -> RenderedMail:
        subject = _render(self.subject, [values], escape=False)
        if "\r" in subject or "\n" in subject or not subject.strip():
            raise TemplateError(f"{self.name}: the subject must be one non-empty line")
        if len(subject) > SUBJECT_MAX:
            raise TemplateError(f"{self.name}: the subject is longer than {SUBJECT_MAX} characters")
        return RenderedMail(
            subject=subject.strip(),
            text=_render(self.text, [values], escape=False),
            html=_render(self.html, [values], escape=True),
        )

    def placeholders(self) -> dict[str, Any]:
        """Every name the template uses: ``{"name": None, "items": {"inner": None}}`` (a
        section maps to the names used inside it). For sample values in tests and docs."""
        found: dict[str, Any] = {}
        for part in (self.subject, self.text, self.html):
            _collect(part, found)
        return found


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def parse(source: str, *, name: str = "<string>") -> tuple[_Node, ...]:
    """The nodes of one template part; a syntax error raises ``TemplateError``."""
    if "{{{" in source or "}}}" in source:
        raise TemplateError(f"{name}: no unescaped {{{{{{name}}}}}} output")
    stack: list[tuple[str, list[_Node]]] = [("", [])]
    position = 0
    for match in _TAG.finditer(source):
        _text(stack[-1][1], source[position : match.start()], name)
        position = match.end()
        kind = match["line_kind"] if match["line_kind"] is not None else match["kind"]
        tag = match["line_name"] or match["name"]
        if kind == "#":
            stack.append((tag, []))
        elif kind == "/":
            opened, body = stack.pop() if len(stack) > 1 else ("", [])
            if opened != tag:
                raise TemplateError(f"{name}: {{{{/{tag}}}}} closes no open {{{{#{tag}}}}}")
            stack[-1][1].append(_Section(tag, tuple(body)))
        else:
            stack[-1][1].append(_Var(tag))
    _text(stack[-1][1], source[position:], name)
    if len(stack) > 1:
        raise TemplateError(f"{name}: {{{{#{stack[-1][0]}}}}} is never closed")
    return tuple(stack[0][1])


def _text(nodes: list[_Node], text: str, name: str) -> None:
    if "{{" in text or "}}" in text:
        raise TemplateError(f"{name}: only {{{{name}}}} and {{{{#list}}}}…{{{{/list}}}} are allowed")
    if text:
        nodes.append(text)


def _lookup(name: str, scopes: Sequence[Mapping[str, Any]]) -> Any:
    for scope in reversed(scopes):
        if name in scope:
            return scope[name]
    raise TemplateError(f"no value for {{{{{name}}}}}")


def _render(nodes: Sequence[_Node], scopes: list[Mapping[str, Any]], *, escape: bool) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Var):
            value = _lookup(node.name, scopes)
            # bool is an int; a flag is logic, which templates do not have.
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise TemplateError(f"{{{{{node.name}}}}} must be a string or an integer")
            text = str(value)
            out.append(html.escape(text, quote=True) if escape else text)
        else:
            items = _lookup(node.name, scopes)
            if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
                raise TemplateError(f"{{{{#{node.name}}}}} must be a list of mappings")
            for item in items:
                if not isinstance(item, Mapping):
                    raise TemplateError(f"{{{{#{node.name}}}}} must be a list of mappings")
                out.append(_render(node.body, [*scopes, item], escape=escape))
    return "".join(out)


def _collect(nodes: Sequence[_Node], found: dict[str, Any]) -> None:
    for node in nodes:
        if isinstance(node, _Var):
            found.setdefault(node.name, None)
        elif isinstance(node, _Section):
            inner = found.get(node.name)
            if not isinstance(inner, dict):
                inner = found[node.name] = {}
            _collect(node.body, inner)


@cache
def load(name: str) -> Template:
    """The shipped template ``name`` (parsed once per process)."""
    if not _TEMPLATE_NAME.fullmatch(name):
        raise TemplateError(f"not a template name: {name!r}")
    text_file, html_file = TEMPLATES / f"{name}.txt", TEMPLATES / f"{name}.html"
    if not text_file.is_file() or not html_file.is_file():
        raise TemplateError(f"no template {name!r} (needs {name}.txt and {name}.html)")
    head, _, body = text_file.read_text(encoding="utf-8").partition("\n")
    if not head.startswith(_SUBJECT) or not body.startswith("\n"):
        raise TemplateError(f"{name}.txt must start with a 'Subject: …' line and a blank line")
    return Template(
        name=name,
        subject=parse(head.removeprefix(_SUBJECT), name=f"{name}.txt subject"),
        text=parse(body[1:], name=f"{name}.txt"),
        html=parse(html_file.read_text(encoding="utf-8"), name=f"{name}.html"),
    )


def names() -> list[str]:
    """The shipped templates."""
    return sorted(entry.name.removesuffix(".txt") for entry in TEMPLATES.iterdir() if entry.name.endswith(".txt"))


def render(name: str, values: Mapping[str, Any]) -> RenderedMail:
    """Subject, text and HTML of the shipped template ``name`` with ``values``."""
    return load(name).render(values)
