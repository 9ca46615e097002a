"""Plans as data (decision 0150, docs/billing.md): the shipped table
(``kijko_core/data/plans.toml``) or the operator's (``KIJKO_PLANS_FILE``, same format), validated
at start-up with one line per problem. Which plan an organization is on is
:func:`kijko_core.billing.subscriptions.plan_for`.

Prices are integer cents, never floats; limits are integers, ``-1`` unlimited.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kijko_core.errors import ConfigurationError
from kijko_core.money import exact_decimal

if TYPE_CHECKING:
    from kijko_core.config import Settings

PlanTier = Literal["free", "pro", "teams", "enterprise"]
#: The contract's PlanTier (§3.6): a plans file defines exactly these.
TIERS: tuple[PlanTier, ...] = ("free", "pro", "teams", "enterprise")
Interval = Literal["monthly", "annually"]
INTERVALS: tuple[Interval, ...] = ("monthly", "annually")
#: The metrics a plan limits (contract UsageMetricType), in the order the usage endpoint lists them.
METRICS = ("api_calls", "ingestions", "storage", "seats", "oracle_queries")
#: The file's key per metric (storage is limited in whole GB).
LIMIT_KEYS = {
    "api_calls": "api_calls",
    "ingestions": "ingestions",
    "storage": "storage_gb",
    "seats": "seats",
    "oracle_queries": "oracle_queries",
}
UNLIMITED = -1
GB = 1024**3
_CURRENCY = re.compile(r"^[a-z]{3}$")
_LOOKUP_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_PLAN_KEYS = {
    "name",
    "description",
    "features",
    "popular",
    "currency",
    "monthly_price_cents",
    "annual_price_cents",
    "custom_price",
    "limits",
    "llm_monthly_spend_cap",
    "stripe",
}


@dataclass(frozen=True)
class Plan:
    id: PlanTier
    name: str
    description: str
    features: tuple[str, ...]
    popular: bool
    currency: str
    #: None: custom price (contact sales).
    monthly_price_cents: int | None
    #: A year's price when billed annually; None: no annual billing (or custom).
    annual_price_cents: int | None
    #: Per metric of :data:`METRICS`: the limit, -1 unlimited (storage in whole GB).
    limits: Mapping[str, int]
    llm_monthly_spend_cap: Decimal | None
    #: Stripe Price lookup_key per interval.
    lookup_keys: Mapping[str, str]

    def limit(self, metric: str) -> int:
        """The limit of ``metric`` in its unit (storage: bytes); -1 unlimited."""
        value = self.limits[metric]
        if metric == "storage" and value != UNLIMITED:
            return value * GB
        return value


class Plans:
    """The plans by id, and the plan an organization is on when nothing else says."""

    def __init__(self, plans: Mapping[str, Plan], default: str = "free") -> None:
        self._plans = dict(plans)
        if default not in self._plans:
            raise ConfigurationError([f"KIJKO_DEFAULT_PLAN: {default!r} is not a plan of the plans file"])
        self.default = self._plans[default]

    def __iter__(self) -> Any:
        return iter(self._plans[tier] for tier in TIERS if tier in self._plans)

    def get(self, plan_id: str) -> Plan:
        return self._plans[plan_id]

    @classmethod
    def shipped_text(cls) -> str:
        return resources.files("kijko_core").joinpath("data/plans.toml").read_text(encoding="utf-8")

    @classmethod
    def load(cls, path: Path | None, default: str = "free") -> Plans:
        """The plans in ``path`` (``KIJKO_PLANS_FILE``), or the shipped ones."""
        if path is None:
            return cls.parse(cls.shipped_text(), "the shipped plans", default)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError([f"KIJKO_PLANS_FILE: cannot read {path}: {error.strerror}"]) from None
        return cls.parse(text, "KIJKO_PLANS_FILE", default)

    @classmethod
    def parse(cls, text: str, origin: str, default: str = "free") -> Plans:
        """Parse a plans file; every problem is one line of the :class:`ConfigurationError`."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError([f"{origin}: not TOML: {error}"]) from None
        tables = document.get("plans")
        problems: list[str] = []
        if not isinstance(tables, dict):
            raise ConfigurationError([f"{origin}: no [plans.<id>] tables"])
        unknown = set(document) - {"plans"}
        if unknown:
            problems.append(f"{origin}: unknown keys {sorted(unknown)}")
        missing = [tier for tier in TIERS if tier not in tables]
        if missing:
            problems.append(f"{origin}: missing plans {missing} (the plans are {list(TIERS)})")
        extra = sorted(set(tables) - set(TIERS))
        if extra:
            problems.append(f"{origin}: unknown plans {extra} (the plans are {list(TIERS)})")
        plans: dict[str, Plan] = {}
        for tier in TIERS:
            if tier in tables:
                plan = _plan(tier, tables[tier], f"{origin}: plans.{tier}", problems)
                if plan is not None:
                    plans[tier] = plan
        if problems:
            raise ConfigurationError(problems)
        return cls(plans, default)


@functools.lru_cache(maxsize=8)
def _cached(path: Path | None, default: str) -> Plans:
    return Plans.load(path, default)


def plans_of(settings: Settings) -> Plans:
    """The plans these settings name (``KIJKO_PLANS_FILE``, ``KIJKO_DEFAULT_PLAN``), read once
    per process and file: ``Kijko.start`` reads them first, so a bad file stops start-up."""
    return _cached(settings.plans_file, settings.default_plan)


def _plan(tier: PlanTier, entry: Any, where: str, problems: list[str]) -> Plan | None:
    before = len(problems)
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a table")
        return None
    unknown = set(entry) - _PLAN_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    name, description = entry.get("name"), entry.get("description", "")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        problems.append(f"{where}.name: a text of 1 to 100 characters")
    if not isinstance(description, str) or len(description) > 500:
        problems.append(f"{where}.description: a text of at most 500 characters")
    features = entry.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) and 0 < len(f) <= 200 for f in features):
        problems.append(f"{where}.features: a list of texts")
    popular = entry.get("popular", False)
    if not isinstance(popular, bool):
        problems.append(f"{where}.popular: true or false")
    currency = entry.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        problems.append(f'{where}.currency: a lower-case ISO 4217 code such as "eur"')
    custom = entry.get("custom_price", False)
    if not isinstance(custom, bool):
        problems.append(f"{where}.custom_price: true or false")
    monthly = annual = None
    if custom is True:
        if "monthly_price_cents" in entry or "annual_price_cents" in entry:
            problems.append(f"{where}: custom_price and prices exclude each other")
    else:
        monthly = _cents(entry.get("monthly_price_cents"), f"{where}.monthly_price_cents", 100, problems)
        if "annual_price_cents" in entry:
            annual = _cents(entry.get("annual_price_cents"), f"{where}.annual_price_cents", 1200, problems)
    limits = _limits(entry.get("limits"), f"{where}.limits", problems)
    cap = _cap(entry.get("llm_monthly_spend_cap"), f"{where}.llm_monthly_spend_cap", problems)
    lookup_keys = _lookup_keys(entry.get("stripe", {}), f"{where}.stripe", problems)
    paid = monthly is not None and monthly > 0
    if paid and "monthly" not in lookup_keys:
        problems.append(f"{where}.stripe.monthly: a paid plan needs the lookup_key of its Stripe Price")
    if annual and "annually" not in lookup_keys:
        problems.append(f"{where}.stripe.annually: an annual price needs the lookup_key of its Stripe Price")
    if len(problems) > before or limits is None:
        return None
    return Plan(
        id=tier,
        name=str(name),
        description=str(description),
        features=tuple(features),
        popular=bool(popular),
        currency=str(currency),
        monthly_price_cents=monthly,
        annual_price_cents=annual,
        limits=limits,
        llm_monthly_spend_cap=cap,
        lookup_keys=lookup_keys,
    )


def _cents(value: Any, where: str, whole: int, problems: list[str]) -> int | None:
    """An amount in cents: an integer (TOML floats are not exact), in whole euros per month."""
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{where}: an integer number of cents such as 2900")
        return None
    if not 0 <= value <= 100_000_000:
        problems.append(f"{where}: between 0 and 100000000")
        return None
    if value % whole:
        per = "a month" if whole == 100 else "a month when billed annually (a multiple of 1200)"
        problems.append(f"{where}: whole euros {per}, as the frontend shows them")
        return None
    return value


def _limits(value: Any, where: str, problems: list[str]) -> dict[str, int] | None:
    if not isinstance(value, dict):
        problems.append(f"{where}: a table of {sorted(LIMIT_KEYS.values())}")
        return None
    known = set(LIMIT_KEYS.values())
    if set(value) - known:
        problems.append(f"{where}: unknown keys {sorted(set(value) - known)}")
    limits: dict[str, int] = {}
    for metric, key in LIMIT_KEYS.items():
        limit = value.get(key)
        if isinstance(limit, bool) or not isinstance(limit, int) or not (limit == UNLIMITED or 0 <= limit <= 10**12):
            problems.append(f"{where}.{key}: an integer of 0 or more, or -1 for unlimited")
            continue
        limits[metric] = limit
    return limits if len(limits) == len(LIMIT_KEYS) else None


def _cap(value: Any, where: str, problems: list[str]) -> Decimal | None:
    if value is None:
        return None
    amount = exact_decimal(value, where, "50.00", problems)
    if amount is not None and not 0 < amount <= 10**9:
        problems.append(f"{where}: more than 0 (leave it out for no cap)")
        return None
    return amount


def _lookup_keys(value: Any, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append(f"{where}: a table of lookup keys per interval {list(INTERVALS)}")
        return {}
    if set(value) - set(INTERVALS):
        problems.append(f"{where}: unknown intervals {sorted(set(value) - set(INTERVALS))}")
    keys: dict[str, str] = {}
    for interval in INTERVALS:
        key = value.get(interval)
        if key is None:
            continue
        if not isinstance(key, str) or not _LOOKUP_KEY.fullmatch(key):
            problems.append(f"{where}.{interval}: a Stripe lookup_key (letters, digits, _ . : -)")
            continue
        keys[interval] = key
    return keys
