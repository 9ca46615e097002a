"""The one rule that says when two spellings of an email address are the same account.

``email_key`` is used for the login rate limit, and ``kijko_private.email_key(text)``
(migration 0006) implements the same rule for the lookup and the unique index, so
``dİmİtrİ@example.com`` is ``dimitri@example.com`` everywhere
(docs/decisions/0036-login-limits-and-email-keys.md):

1. trim ASCII whitespace;
2. NFKD: compatibility forms (full-width letters, ligatures) become plain letters, and
   accented letters become a base letter plus combining marks (``İ`` → ``I`` + U+0307);
3. drop the combining marks of the blocks in ``COMBINING_MARKS``;
4. lower-case each character on its own (simple case mapping, as PostgreSQL's ``lower``;
   Python's ``str.lower`` would apply the context rule of the Greek final sigma).

A test checks that Python and SQL agree on a corpus of tricky addresses.
"""

from __future__ import annotations

import re
import unicodedata

# The combining-mark blocks: Diacritical Marks, Extended, Supplement, for Symbols, Half Marks.
# Spelled as ranges (not the Unicode category) so the SQL function can use the same ones.
COMBINING_MARKS = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)
_MARKS = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in COMBINING_MARKS) + "]")
_WHITESPACE = " \t\r\n"


def email_key(email: str) -> str:
    """The form two addresses are compared in (never shown, never sent)."""
    decomposed = unicodedata.normalize("NFKD", email.strip(_WHITESPACE))
    return "".join(character.lower() for character in _MARKS.sub("", decomposed))
