"""The mailer (docs/mail.md): templates shipped in the package, an outbox written in the
caller's transaction, and delivery by the ``mail.deliver`` job through a transport (SMTP, or
the local outbox in the data directory).

    from kijko_core import mail
    outbox_id = await mail.send(db, to="a@b.c", template="invitation", values={...}, org_id=org)
"""

from kijko_core.mail import delivery as delivery  # declares the mail.deliver job kind
from kijko_core.mail.outbox import InvalidRecipient, OutboxMail, budget_wait, send, send_to_owners
from kijko_core.mail.rendering import RenderedMail, TemplateError, render

__all__ = [
    "InvalidRecipient",
    "OutboxMail",
    "RenderedMail",
    "TemplateError",
    "budget_wait",
    "render",
    "send",
    "send_to_owners",
]
