"""Runtimes on the free plan with chosen limits, for the quota tests (the other suites run on
``enterprise``, tests/conftest.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from kijko_core.billing.plans import LIMIT_KEYS, Plans

FREE_LIMITS = "[plans.free.limits]\napi_calls = 1000\ningestions = 50\nstorage_gb = 1\nseats = 1\noracle_queries = 10\n"


def plans_file(directory: Path, **free: int) -> Path:
    """The shipped plans with the free plan's limits changed (keys of the file: ``storage_gb``)."""
    text = Plans.shipped_text()
    assert FREE_LIMITS in text, "the shipped free plan changed: update tests/quotas_kit.py"
    shipped = {"api_calls": 1000, "ingestions": 50, "storage_gb": 1, "seats": 1, "oracle_queries": 10}
    limits = shipped | free
    assert set(limits) == set(LIMIT_KEYS.values())
    block = "[plans.free.limits]\n" + "".join(f"{key} = {value}\n" for key, value in limits.items())
    path = directory / f"plans-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text.replace(FREE_LIMITS, block), encoding="utf-8")
    return path
