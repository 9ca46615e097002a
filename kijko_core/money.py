"""Reading amounts of money from data files exactly: a decimal *string*, never a TOML or JSON
number (those are binary floats: 0.1 is not 0.1)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


def exact_decimal(value: Any, where: str, example: str, problems: list[str]) -> Decimal | None:
    """``value`` as a finite Decimal, or None with a line in ``problems`` naming ``where``;
    bounds are the caller's."""
    if not isinstance(value, str):
        problems.append(f'{where}: a decimal string such as "{example}" (TOML numbers are not exact)')
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        problems.append(f"{where}: not a decimal number")
        return None
    if not amount.is_finite():
        problems.append(f"{where}: not a finite number")
        return None
    return amount
