"""Delivering an outbox row: the ``mail.deliver`` job (docs/mail.md).

One attempt counts itself on the row (in its own short transaction), hands the message to
the transport outside any transaction (an SMTP conversation must not hold a connection and
locks), then marks the row sent or failed with a compare-and-set. A failed attempt raises,
and the jobs system retries it with backoff; the last one marks the row failed. A permanent
refusal (5xx for the recipient or the message) fails the row at once and ends the job: no
retry could change the answer. A mail failed for lack of attempts keeps its bodies, so an
operator's ``kijko jobs retry`` of its job sends it again.

Delivery is at least once: a worker that dies between the server's "250 OK" and the commit
of ``sent`` leaves the job to be retried, and the mail goes out twice with the same
Message-ID (made from the outbox id).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from uuid import UUID

import structlog

from kijko_core.config import Settings
from kijko_core.db.session import Session
from kijko_core.jobs import JobContext, job_kind
from kijko_core.mail import outbox
from kijko_core.mail.transport import DeliveryFailed, MailTransport, build_message, make_transport, sender

log = structlog.get_logger("kijko.mail")

#: Attempts of one mail before it is failed (the ``mail.deliver`` job kind's maximum).
MAX_ATTEMPTS = 6

OpenSession = Callable[[], AbstractAsyncContextManager[Session]]


async def deliver_once(
    settings: Settings,
    open_session: OpenSession,
    outbox_id: UUID,
    *,
    last_attempt: bool,
    revive_failed: bool = False,
    transport: MailTransport | None = None,
) -> str:
    """One delivery attempt of ``outbox_id``; ``open_session`` opens a session that sees the
    row (its organization's service session, or a system session for system mail). Returns
    the row's new state (``sent``, ``failed``, or ``gone`` when it was not queued any more);
    raises ``DeliveryFailed`` for an attempt to be retried. ``revive_failed``: this is the
    first attempt of its job, so a failed row that kept its bodies was retried by an operator
    and is sent again."""
    async with open_session() as db:
        mail = await outbox.begin_attempt(db, outbox_id, revive_failed=revive_failed)
    if mail is None:
        return "gone"  # sent or failed already (a repeated job), or deleted
    message = build_message(mail, sender(settings))
    try:
        await (transport or make_transport(settings)).deliver(message, outbox_id=mail.id, template=mail.template)
    except DeliveryFailed as error:
        final = error.permanent or last_attempt
        async with open_session() as db:
            if final:
                # Refused for good: the body goes. Out of attempts: kept, so that retrying
                # the job (`kijko jobs retry`) once the cause is fixed sends it.
                await outbox.finish(db, mail.id, sent=False, error=str(error), for_good=error.permanent)
            else:
                await outbox.record_error(db, mail.id, str(error))
        log.warning(
            "mail delivery failed",
            outbox_id=str(mail.id),
            template=mail.template,
            attempt=mail.attempts,
            final=final,
            error=str(error),
        )
        if error.permanent:
            return "failed"
        raise
    async with open_session() as db:
        await outbox.finish(db, mail.id, sent=True)
    return "sent"


@job_kind(outbox.DELIVER, max_attempts=MAX_ATTEMPTS, lease_seconds=60)
async def deliver(ctx: JobContext) -> None:
    """The ``mail.deliver`` job: one attempt at the outbox row named by the payload. Tenant
    mail is read and marked in the organization's service session (under RLS), system mail
    in a system session."""
    outbox_id = UUID(str(ctx.payload["outbox_id"]))
    open_session: OpenSession = ctx.service_session if ctx.org_id is not None else ctx.system_session
    await deliver_once(
        ctx.kijko.settings,
        open_session,
        outbox_id,
        last_attempt=ctx.attempt >= MAX_ATTEMPTS,
        revive_failed=ctx.attempt == 1,  # a job's first attempt finding its mail failed: a retry
    )
