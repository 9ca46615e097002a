"""Database failures that mean "try again", not "bug" (decision 0144).

A transaction that lost a deadlock or a serialization check, or gave up waiting for a lock or
for its statement, was rolled back by PostgreSQL and changed nothing: the same request may
succeed a moment later. They are recognised by their SQLSTATE, which says nothing about the
query's parameters (the message and detail of some of them name rows; those are never logged).
"""

from __future__ import annotations

import asyncpg

#: SQLSTATE -> condition name (PostgreSQL's Appendix A).
TRANSIENT_SQLSTATES: dict[str, str] = {
    "40001": "serialization_failure",
    "40P01": "deadlock_detected",
    "55P03": "lock_not_available",  # lock_timeout, or NOWAIT
    "57014": "query_canceled",  # statement_timeout
}


def transient_sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a transient database failure: ``error`` itself or what it was raised
    from (``raise ... from``). Only explicit causes count: an error raised while handling one
    (its ``__context__``) is a failure of its own."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, asyncpg.PostgresError) and seen.sqlstate in TRANSIENT_SQLSTATES:
            return str(seen.sqlstate)
        seen = seen.__cause__
    return None
