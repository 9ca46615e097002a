"""The outbox table (``kijko.mail_outbox``, migration 0008) and ``send``.

``send`` renders a template and writes the mail in the caller's transaction, together with the
``mail.deliver`` job that delivers it: a change that rolls back sends nothing, and a committed
one is delivered (at least once) even if the process dies right after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel

from kijko_core import jobs
from kijko_core.db import sql
from kijko_core.db.session import Session, SystemSession
from kijko_core.errors import ValidationFailed
from kijko_core.logging import get_logger
from kijko_core.mail import rendering

log = get_logger("kijko.mail")

#: The job kind that delivers an outbox row (kijko_core/mail/delivery.py).
DELIVER = "mail.deliver"
#: How much of a delivery error is kept on the row.
ERROR_LIMIT = 2000


class OutboxMail(BaseModel):
    """A row of ``kijko.mail_outbox``. The bodies are ``None`` once the mail left."""

    id: UUID
    organization_id: UUID | None
    recipient: str
    template: str
    subject: str
    text_body: str | None
    html_body: str | None
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class InvalidRecipient(ValidationFailed):
    code = "INVALID_EMAIL"
    default_message = "The email address is not valid"


TABLE = sql.Table("kijko.mail_outbox", OutboxMail)

_INSERT = sql.compose(
    "INSERT INTO {table} (organization_id, recipient, template, subject, text_body, html_body)"
    "\nVALUES ($1, $2, $3, $4, $5, $6)\nRETURNING id",
    table=TABLE,
)
_GET = sql.compose("SELECT {columns}\nFROM {table}\nWHERE id = $1", columns=TABLE.select_list, table=TABLE)
# One attempt counted, and the row read, only while it is queued — or, for the first attempt
# of a job an operator retried, when it failed but still has its bodies (queued again).
_BEGIN_ATTEMPT = sql.compose(
    "UPDATE {table} SET attempts = attempts + 1, state = 'queued', finished_at = NULL"
    "\nWHERE id = $1 AND (state = 'queued' OR ($2 AND state = 'failed' AND text_body IS NOT NULL))"
    "\nRETURNING {columns}",
    table=TABLE,
    columns=TABLE.select_list,
)
# Compare-and-set: only a queued row finishes, once (decision 0055). A sent mail loses its
# bodies, and a failed one when $4 (refused for good); it keeps the error of an earlier attempt.
_FINISH = sql.compose(
    "UPDATE {table} SET state = $2, last_error = coalesce($3, last_error), finished_at = now(),"
    " text_body = CASE WHEN $4 THEN NULL ELSE text_body END,"
    " html_body = CASE WHEN $4 THEN NULL ELSE html_body END"
    "\nWHERE id = $1 AND state = 'queued'\nRETURNING id",
    table=TABLE,
)
# Finished mail of the same organization (NULL: system mail) past retention, a bounded batch.
_PRUNE = sql.compose(
    "DELETE FROM {table}\nWHERE id IN (SELECT id FROM {table}"
    " WHERE organization_id IS NOT DISTINCT FROM $1 AND finished_at < now() - make_interval(days => $2)"
    " LIMIT $3)",
    table=TABLE,
)
# Seconds until an organization may send another mail of a template, given its budget per
# hour ($3): 0 while fewer were written in the last hour (rows of the caller's own transaction
# count: their created_at is its now()).
_BUDGET_WAIT = sql.compose(
    "SELECT CASE WHEN count(*) >= $3"
    "\n    THEN greatest(1, ceil(extract(epoch FROM min(created_at) + interval '1 hour' - now())))::int"
    "\n    ELSE 0 END"
    "\nFROM {table}\nWHERE organization_id = $1 AND template = $2 AND created_at > now() - interval '1 hour'",
    table=TABLE,
)
_RECORD_ERROR = sql.compose("UPDATE {table} SET last_error = $2\nWHERE id = $1 AND state = 'queued'", table=TABLE)


def recipient_address(to: str) -> str:
    """``to`` checked as one email address (no display name, no header tricks), normalized."""
    if not isinstance(to, str) or any(c in to for c in "\r\n,<>"):
        raise InvalidRecipient(field="email")
    try:
        return validate_email(to, check_deliverability=False).normalized
    except EmailNotValidError:
        raise InvalidRecipient(field="email") from None


async def send(
    db: Session,
    *,
    to: str,
    template: str,
    values: Mapping[str, Any],
    org_id: UUID | None,
) -> UUID:
    """Render ``template`` with ``values`` for ``to`` and queue it in ``db``'s transaction;
    returns the outbox id. ``org_id`` is the organization the mail belongs to (the session's,
    under row-level security); ``None`` is system mail and needs a system session.

    Raises ``rendering.TemplateError`` for values that do not fit the template (a bug) and
    ``InvalidRecipient`` for an address that is not one.
    """
    if org_id is None and not isinstance(db, SystemSession):
        raise ValueError("mail without an organization is system mail: send it in a system session")
    rendered = rendering.render(template, values)
    recipient = recipient_address(to)
    outbox_id: UUID = await db.fetchval(
        _INSERT, org_id, recipient, template, rendered.subject, rendered.text, rendered.html
    )
    await _enqueue_delivery(db, outbox_id, org_id)
    return outbox_id


# The organization's owners, oldest first (``kijko.organization_members()`` reads the session's
# organization, under row-level security).
_OWNERS = (
    "SELECT email, btrim(first_name || ' ' || last_name) AS name FROM kijko.organization_members()"
    " WHERE role = 'owner' ORDER BY joined_at, user_id"
)


async def send_to_owners(db: Session, *, template: str, values: Mapping[str, Any], org_id: UUID) -> int:
    """:func:`send` ``template`` to each owner of the session's organization, with their name as
    ``name`` on top of ``values``; an owner whose address is not one is skipped (logged).
    Returns how many were queued."""
    queued = 0
    for row in await db.fetch(_OWNERS):
        try:
            await send(
                db,
                to=row["email"],
                template=template,
                values={**values, "name": row["name"] or row["email"]},
                org_id=org_id,
            )
        except InvalidRecipient:
            log.warning("owner_mail_skipped", template=template, reason="invalid address")
        else:
            queued += 1
    return queued


async def _enqueue_delivery(db: Session, outbox_id: UUID, org_id: UUID | None) -> None:
    # The job row commits with the outbox row; the doorbell rings after the commit.
    await jobs.enqueue(db, DELIVER, {"outbox_id": str(outbox_id)}, org_id=org_id)


async def get(db: Session, outbox_id: UUID) -> OutboxMail | None:
    """The row (visible to ``db``: its organization's, or any to a system session)."""
    return TABLE.maybe(await db.fetchrow(_GET, outbox_id))


async def begin_attempt(db: Session, outbox_id: UUID, *, revive_failed: bool = False) -> OutboxMail | None:
    """Count a delivery attempt and return the row; ``None`` if it is not queued (any more).
    ``revive_failed``: a failed row that still has its bodies is queued again (the first
    attempt of a job an operator retried)."""
    return TABLE.maybe(await db.fetchrow(_BEGIN_ATTEMPT, outbox_id, revive_failed))


async def finish(db: Session, outbox_id: UUID, *, sent: bool, error: str | None = None, for_good: bool = True) -> bool:
    """Mark a queued row sent (erasing its bodies) or failed (erasing them too when
    ``for_good``; else kept for a retry); ``False`` if it was not queued."""
    state = "sent" if sent else "failed"
    return await db.fetchval(_FINISH, outbox_id, state, _clip(error), sent or for_good) is not None


async def budget_wait(db: Session, org_id: UUID, template: str, per_hour: int) -> int:
    """Seconds until ``org_id`` may queue another ``template`` mail (0: now), at most
    ``per_hour`` in any hour. Concurrent transactions may each pass the last free place: the
    budget bounds abuse (anyone may sign up and invite), it is not an exact quota."""
    return int(await db.fetchval(_BUDGET_WAIT, org_id, template, per_hour) or 0)


async def record_error(db: Session, outbox_id: UUID, error: str) -> None:
    """Keep the error of an attempt that will be retried."""
    await db.execute(_RECORD_ERROR, outbox_id, _clip(error))


async def prune(db: Session, org_id: UUID | None, *, retention_days: int, limit: int = 100) -> int:
    """Delete up to ``limit`` mails of ``org_id`` (``None``: system mail) that finished more
    than ``retention_days`` ago; returns how many. Run after each delivery, so an organization
    that sends mail cleans up after itself (decision 0055)."""
    status = await db.execute(_PRUNE, org_id, retention_days, limit)
    return int(status.rpartition(" ")[2] or 0)


def _clip(error: str | None) -> str | None:
    return None if error is None else error[:ERROR_LIMIT]
