"""Validating a BTW/VAT number: its checksum offline, then VIES (decision 0160).

1. The checksum with python-stdnum (:func:`kijko_core.billing.btw.check_vat`). A number that
   fails it is answered ``isValid: false`` at once: VIES is never asked about it.
2. VIES, the European Commission's VAT Information Exchange System, at ``KIJKO_VIES_URL`` (its
   REST API, ``POST …/rest-api/check-vat-number`` with ``{"countryCode", "vatNumber"}``;
   answer ``{"valid", "name", "address", …}``, ``"---"`` for what a member state does not
   disclose; errors as ``{"actionSucceed": false, "errorWrappers": [{"error", "message"}]}``
   with any status, or a ``userError`` code). It is called through the egress-guarded client
   (``kijko.egress``) within ``KIJKO_VIES_TIMEOUT_SECONDS`` in total.
3. VIES's answers (valid or not) are kept for ``KIJKO_VIES_CACHE_SECONDS`` (in Redis when
   configured, else in the process), so a number checked again within that time costs no call.
4. VIES unreachable, slow, or answering an error (``MS_UNAVAILABLE``, ``TIMEOUT``, a 500…): the
   answer is the checksum's ``isValid`` with an ``errorMessage`` saying VIES could not confirm
   it. Errors are not cached: the next check asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import httpx

from kijko_core.billing.btw import InvalidVatNumber, VatNumber, check_vat
from kijko_core.config import Settings
from kijko_core.logging import get_logger
from kijko_core.sources.cache import ProviderCache
from kijko_core.wire import WireModel

log = get_logger("kijko.billing.vies")

_CACHE_PREFIX = "kijko:vies:"
# VIES's error codes are upper-case words; anything else is not repeated to the caller.
_ERROR_CODE = re.compile(r"^[A-Z][A-Z_]{0,39}$")
# What VIES says for a name or address a member state does not disclose.
_UNDISCLOSED = frozenset({"", "---"})


class BtwValidationResult(WireModel):
    """``POST /billing/details/validate-btw`` (contract §3.6): whether the number is valid, and
    what VIES says of its holder; ``errorMessage`` when it is invalid or VIES could not confirm."""

    is_valid: bool
    company_name: str | None = None
    address: str | None = None
    error_message: str | None = None


class ViesUnavailable(Exception):
    """VIES gave no answer about the number; ``reason`` is for the caller (no number in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def make_cache(redis: Any, settings: Settings) -> ProviderCache:
    """The cache of VIES answers: shared through Redis when there is one, else per process."""
    return ProviderCache(redis, settings.vies_cache_seconds, event="vies_cache_unavailable")


def _cache_key(number: VatNumber) -> str:
    # Hashed: the key space need not list the numbers checked.
    return _CACHE_PREFIX + hashlib.sha256(f"{number.country}:{number.number}".encode()).hexdigest()


def _text(value: Any) -> str | None:
    """A name or address as VIES gives it, on one line; None when not disclosed."""
    if not isinstance(value, str):
        return None
    lines = [line.strip() for line in value.splitlines()]
    text = ", ".join(line for line in lines if line)
    return None if text in _UNDISCLOSED else text[:500]


def _error_code(payload: dict[str, Any]) -> str | None:
    """The error VIES reports in a body, if any (``errorWrappers`` or ``userError``)."""
    wrappers = payload.get("errorWrappers")
    if isinstance(wrappers, list) and wrappers:
        first = wrappers[0] if isinstance(wrappers[0], dict) else {}
        code = first.get("error")
        return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else "ERROR"
    if payload.get("actionSucceed") is False:
        return "ERROR"
    user_error = payload.get("userError")
    if isinstance(user_error, str) and user_error not in ("VALID", "INVALID"):
        return user_error if _ERROR_CODE.fullmatch(user_error) else "ERROR"
    return None


async def ask_vies(client: httpx.AsyncClient, settings: Settings, number: VatNumber) -> dict[str, Any]:
    """VIES's answer about ``number`` as ``{"valid", "name", "address"}``; ViesUnavailable when
    there is none (not reachable, too slow, an error, an answer that is not one)."""
    assert settings.vies_url is not None
    timeout = settings.vies_timeout_seconds
    try:
        async with asyncio.timeout(timeout):  # in total: connect, send, a slowly dripping answer
            response = await client.post(
                settings.vies_url,
                json={"countryCode": number.country, "vatNumber": number.number},
                headers={"Accept": "application/json"},
                timeout=httpx.Timeout(timeout),
            )
    except TimeoutError:
        raise ViesUnavailable("VIES did not answer in time") from None
    except httpx.TimeoutException:
        raise ViesUnavailable("VIES did not answer in time") from None
    except httpx.HTTPError:
        raise ViesUnavailable("VIES could not be reached") from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ViesUnavailable(f"VIES answered HTTP {response.status_code} without a result")
    code = _error_code(payload)
    if code is not None:
        raise ViesUnavailable(f"VIES answered {code}")
    valid = payload.get("valid")
    if response.status_code != 200 or not isinstance(valid, bool):
        raise ViesUnavailable(f"VIES answered HTTP {response.status_code} without a result")
    return {"valid": valid, "name": _text(payload.get("name")), "address": _text(payload.get("address"))}


async def validate_btw(
    text: str, *, settings: Settings, client: httpx.AsyncClient, cache: ProviderCache
) -> BtwValidationResult:
    """Validate the BTW/VAT number ``text``: checksum, then VIES (see the module)."""
    try:
        number = check_vat(text)
    except InvalidVatNumber as error:
        return BtwValidationResult(is_valid=False, error_message=str(error))
    if settings.vies_url is None:
        return BtwValidationResult(
            is_valid=True, error_message="The checksum is valid; VIES checks are turned off on this server"
        )
    key = _cache_key(number)
    answer = await cache.get(key)
    if not isinstance(answer, dict):
        try:
            answer = await ask_vies(client, settings, number)
        except ViesUnavailable as unavailable:
            log.info("vies_unavailable", country=number.country, reason=unavailable.reason)
            return BtwValidationResult(
                is_valid=True,
                error_message=f"{unavailable.reason}, so it could not confirm this number; its checksum is valid",
            )
        await cache.put(key, answer)
    if not answer.get("valid"):
        return BtwValidationResult(
            is_valid=False, error_message="VIES does not know this number as an active EU VAT number"
        )
    return BtwValidationResult(is_valid=True, company_name=answer.get("name"), address=answer.get("address"))
