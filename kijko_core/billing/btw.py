"""Offline checks of what billing details hold: BTW/VAT numbers, KVK numbers, countries.

A BTW/VAT number is checked with python-stdnum (``stdnum.eu.vat``, which hands Dutch numbers to
``stdnum.nl.btw``): the maintained format and check-digit rules of every EU member state (and
``XI``, Northern Ireland, which VIES also answers for). A number is kept compact and upper-case,
with its country prefix (``NL000099998B57``); one without a prefix, or with a country outside
the EU, is refused: VIES could not confirm it. Messages name what is wrong, never the number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pycountry
from stdnum.eu import vat
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidLength, ValidationError

_KVK = re.compile(r"^[0-9]{8}$")
_ALPHA2 = re.compile(r"^[A-Z]{2}$")
# What python-stdnum's compact form may still hold (it strips spaces, dots, dashes, slashes).
_VAT_SHAPE = re.compile(r"^[A-Z]{2}[0-9A-Z]{2,13}$")


class InvalidVatNumber(ValueError):
    """Not a valid EU VAT number; the message says why, without the number."""


@dataclass(frozen=True)
class VatNumber:
    """A checked EU VAT number: ``compact`` as stored (``NL000099998B57``); ``country`` and
    ``number`` as VIES asks for them (Greece is ``EL`` there, whichever prefix was given)."""

    compact: str
    country: str
    number: str


def _reason(error: ValidationError) -> str:
    if isinstance(error, InvalidChecksum):
        return "its check digits do not match"
    if isinstance(error, InvalidLength):
        return "it has the wrong length for its country"
    if isinstance(error, InvalidComponent):
        return "it does not start with the code of an EU member state"
    return "it does not have the format of its country"


def check_vat(text: str) -> VatNumber:
    """The EU VAT number ``text`` (spaces, dots and dashes allowed, any case), checked offline."""
    try:
        compact = vat.compact(text).upper()
    except ValidationError as error:
        raise InvalidVatNumber(f"Not a valid EU VAT number: {_reason(error)}") from None
    if not compact[:2].isalpha():
        raise InvalidVatNumber("Not a valid EU VAT number: it must start with its country code (e.g. NL)")
    try:
        vat.validate(compact)
    except ValidationError as error:
        raise InvalidVatNumber(f"Not a valid EU VAT number: {_reason(error)}") from None
    if not _VAT_SHAPE.fullmatch(compact):  # the database's check: nothing stdnum let through escapes it
        raise InvalidVatNumber("Not a valid EU VAT number: it does not have the format of its country")
    country = "EL" if compact[:2] == "GR" else compact[:2]
    return VatNumber(compact, country, compact[2:])


def check_kvk(text: str) -> str:
    """A KVK number (the Dutch Chamber of Commerce's): exactly 8 digits (spaces are dropped)."""
    compact = text.replace(" ", "")
    if not _KVK.fullmatch(compact):
        raise ValueError("A KVK number has exactly 8 digits")
    return compact


def check_country(text: str) -> str:
    """An ISO 3166-1 alpha-2 country code (any case in, upper case out)."""
    code = text.strip().upper()
    if not _ALPHA2.fullmatch(code) or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError("Not an ISO 3166-1 alpha-2 country code (e.g. NL)")
    return code
