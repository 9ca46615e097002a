"""The insides of the Stripe stand-in (``tests/stripe_server.py``).

- ``forms``: form decoding, parameter checks, Stripe's error shape.
- ``state``: the account — objects by id, the clock, events, idempotency records.
- ``objects``: object builders in the pinned API version's shapes.
- ``expand``: ``expand[]`` and includable fields.
- ``periods``: billing periods and proration arithmetic.
- ``invoices``: invoices, payments and their outcomes.
- ``billing``: subscriptions — items, proration, cancellation, renewals as time passes.
- ``schedules``: subscription schedules and their phases.
- ``checkout``: Checkout Sessions and their completion.
- ``routes``: the route table, lookups, pagination; ``endpoints/``: the endpoints and the
  parameters each accepts.
- ``webhooks``: signing and delivering events.
"""
