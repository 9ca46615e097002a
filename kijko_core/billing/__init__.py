"""Billing: plans and quotas, the organization's billing details, and later Stripe (issue 9)."""
