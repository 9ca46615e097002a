"""Finding secrets in chunk text and replacing each with a typed placeholder
(docs/chunking.md#secrets).

The detection is detect-secrets' (its plugins used directly, never its settings, verification
or network calls): the token formats it knows, private keys, basic-auth URLs, secret-sounding
keywords and high-entropy strings — the last only when they are the value of an assignment,
since quoted hashes and fixtures are everywhere in code. Each plugin's regex runs once over the
whole text; the keyword plugin only on the lines that contain one of its keywords.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from detect_secrets.filters import heuristic
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import (
    DENYLIST as KEYWORDS,
)
from detect_secrets.plugins.keyword import (
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    REGEX_BY_FILETYPE,
    KeywordDetector,
)
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.util.filetype import determine_file_type

#: The placeholder a secret's value is replaced with.
PLACEHOLDER = "<REDACTED:{kind}>"

#: Token formats: plugin → the placeholder's kind. The whole match is the secret (some of the
#: plugins' patterns capture only a prefix, which their ``analyze_string`` would report).
_FORMATS: tuple[tuple[RegexBasedDetector, str], ...] = (
    (GitHubTokenDetector(), "github_token"),
    (GitLabTokenDetector(), "gitlab_token"),
    (SlackDetector(), "slack_token"),
    (StripeDetector(), "stripe_key"),
    (OpenAIDetector(), "openai_key"),
    (PypiTokenDetector(), "pypi_token"),
    (SendGridDetector(), "sendgrid_key"),
    (DiscordBotTokenDetector(), "discord_token"),
    (AzureStorageKeyDetector(), "azure_storage_key"),
)
#: Patterns whose first group is the secret: the password of a URL, a keyed AWS secret, npm's.
_GROUPED: tuple[tuple[re.Pattern[str], str], ...] = (
    *((pattern, "basic_auth_password") for pattern in BasicAuthDetector().denylist),
    (AWSKeyDetector().denylist[1], "aws_secret_key"),
    *((pattern, "npm_token") for pattern in NpmDetector().denylist),
)
_AWS_KEY_ID = AWSKeyDetector().denylist[0]
# detect-secrets' JWT pattern ends lazily (before the signature): ours takes the signature too.
_JWT = re.compile(JwtTokenDetector.denylist[0].pattern.removesuffix("*?") + "*")
_KEYWORD = KeywordDetector()
_KEYWORD_LINE = re.compile("|".join(KEYWORDS), re.IGNORECASE)
_ENTROPY: tuple[HighEntropyStringsPlugin, ...] = (Base64HighEntropyString(), HexHighEntropyString())
# ``name = "value"``, ``name: 'value'``, ``name := "value"``, ``name => "value"``.
_ASSIGNED = re.compile(r"""[\w.\-\]\[]+['"]?\s*(?::=|=>|=|:)\s*(['"])([^'"\s]{16,})\1""")
# A private key: its BEGIN line (detect-secrets' markers), base64/header lines, its END line.
_KEY_BEGIN = re.compile("|".join(p.pattern for p in PrivateKeyDetector().denylist))
_KEY_BODY_LINE = r"[ \t]*[A-Za-z0-9+/=:,\- \t]*\r?\n"
_KEY_END = r"-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
_KEY_BLOCK = re.compile(r"-*(?:" + _KEY_BEGIN.pattern + r")[^\n]*\n(?:" + _KEY_BODY_LINE + r")*?[ \t]*" + _KEY_END)
# A chunk may hold only part of a key: the BEGIN line and what follows it, or what precedes END.
_KEY_HEAD = re.compile(r"-*(?:" + _KEY_BEGIN.pattern + r")[^\n]*(?:\n[ \t]*[A-Za-z0-9+/=:,\- \t]+)*")
_KEY_TAIL = re.compile(r"\A(?:" + _KEY_BODY_LINE + r")*[ \t]*" + _KEY_END)
#: Values shorter than this are never replaced (a stray match must not blank out code).
_MIN_VALUE = 6


@dataclass(frozen=True)
class Found:
    kind: str
    value: str


def _blank_key(match: re.Match[str]) -> str:
    # The block becomes one placeholder; its line breaks stay, so line numbers keep matching.
    return PLACEHOLDER.format(kind="private_key") + "\n" * match.group(0).count("\n")


def _likely_placeholder(value: str) -> bool:
    return (
        heuristic.is_templated_secret(value)
        or heuristic.is_prefixed_with_dollar_sign(value)
        or heuristic.is_sequential_string(value)
        or heuristic.is_potential_uuid(value)
        or value.startswith("<REDACTED:")
    )


def find_secrets(text: str) -> Iterator[Found]:
    """Secret values in ``text`` distinctive enough to be replaced wherever they occur
    (private keys and keyword assignments aside: ``redact`` handles those in place)."""
    for match in _AWS_KEY_ID.finditer(text):
        yield Found("aws_access_key", match.group(0))
    for plugin, kind in _FORMATS:
        for pattern in plugin.denylist:
            for match in pattern.finditer(text):
                yield Found(kind, match.group(0))
    for match in _JWT.finditer(text):
        if JwtTokenDetector.is_formally_valid(match.group(0)):
            yield Found("jwt", match.group(0))
    for pattern, kind in _GROUPED:
        for match in pattern.finditer(text):
            if match.group(1):
                yield Found(kind, match.group(1))
    for match in _ASSIGNED.finditer(text):
        value = match.group(2)
        if _likely_placeholder(value):
            continue
        for entropy in _ENTROPY:
            if set(value) <= set(entropy.charset) and entropy.calculate_shannon_entropy(value) > entropy.entropy_limit:
                yield Found("high_entropy_string", value)
                break


def _redact_keywords(text: str, path: str) -> tuple[str, int]:
    """Values assigned to secret-sounding names, replaced on their own line only (a short
    password must not blank out the same word elsewhere)."""
    regexes = REGEX_BY_FILETYPE.get(determine_file_type(path), QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)
    placeholder = PLACEHOLDER.format(kind="secret")
    lines = text.split("\n")
    count = 0
    for index, line in enumerate(lines):
        if not _KEYWORD_LINE.search(line) or heuristic.is_indirect_reference(line):
            continue
        for value in set(_KEYWORD.analyze_string(line, denylist_regex_to_group=regexes)):
            if len(value) >= 2 and not _likely_placeholder(value):
                count += line.count(value)
                line = line.replace(value, placeholder)
        lines[index] = line
    return "\n".join(lines), count


def redact(text: str, *, path: str = "") -> tuple[str, int]:
    """``text`` with every secret replaced by ``<REDACTED:kind>``, and how many replacements.
    ``path`` chooses the keyword rules (a ``.yaml`` file's differ from code's)."""
    count = 0
    if _KEY_BEGIN.search(text) or "PRIVATE KEY-----" in text:
        for pattern in (_KEY_BLOCK, _KEY_HEAD, _KEY_TAIL):
            text, replaced = pattern.subn(_blank_key, text)
            count += replaced
    found: dict[str, str] = {}
    for item in find_secrets(text):
        value = item.value.strip()
        if len(value) >= _MIN_VALUE and value not in found:
            found[value] = item.kind
    # Longest first, so a value inside another (a key inside a URL) is not cut in two.
    for value in sorted(found, key=lambda v: (-len(v), v)):
        placeholder = PLACEHOLDER.format(kind=found[value])
        replaced = text.count(value)
        text = text.replace(value, placeholder)
        count += replaced
    if _KEYWORD_LINE.search(text):
        text, replaced = _redact_keywords(text, path)
        count += replaced
    return text, count
