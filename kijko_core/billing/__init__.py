"""Billing (issue 9; docs/billing.md, docs/billing-details.md): plans as data (:mod:`.plans`),
the quota engine (:mod:`.quotas`), the owners' quota mails (:mod:`.alerts`), the usage read side
(:mod:`.service`) and the organization's billing details with BTW/VAT checks (:mod:`.details`,
:mod:`.vies`); Stripe comes later. No web framework here."""
