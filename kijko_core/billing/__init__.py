"""Billing without Stripe (issue 9; docs/billing.md): plans as data (:mod:`.plans`), the quota
engine (:mod:`.quotas`), the owners' quota mails (:mod:`.alerts`) and the usage read side
(:mod:`.service`). No web framework here."""
