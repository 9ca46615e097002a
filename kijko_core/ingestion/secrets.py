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
from typing import NamedTuple

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


class _Rule(NamedTuple):
    pattern: re.Pattern[str]
    kind: str
    group: int  # which group is the secret (0: the whole match)
    hints: tuple[str, ...]  # the rule runs only if the lower-cased text holds one (none: always)


def _rules() -> tuple[_Rule, ...]:
    # The whole match is the secret unless said otherwise: some plugins' patterns capture only
    # a prefix, which their own ``analyze_string`` would report.
    formats: tuple[tuple[RegexBasedDetector, str, tuple[str, ...]], ...] = (
        (GitHubTokenDetector(), "github_token", ("gh",)),
        (GitLabTokenDetector(), "gitlab_token", ("gl",)),
        (SlackDetector(), "slack_token", ("xox", "hooks.slack.com")),
        (StripeDetector(), "stripe_key", ("k_live_",)),
        (OpenAIDetector(), "openai_key", ("t3blbkfj",)),
        (PypiTokenDetector(), "pypi_token", ("pypi-",)),
        (SendGridDetector(), "sendgrid_key", ("sg.",)),
        (DiscordBotTokenDetector(), "discord_token", ()),
        (AzureStorageKeyDetector(), "azure_storage_key", ("accountkey=",)),
    )
    aws = AWSKeyDetector().denylist
    rules = [_Rule(aws[0], "aws_access_key", 0, ())]
    rules += [_Rule(pattern, kind, 0, hints) for plugin, kind, hints in formats for pattern in plugin.denylist]
    rules += [_Rule(pattern, "basic_auth_password", 1, ("@",)) for pattern in BasicAuthDetector().denylist]
    rules.append(_Rule(aws[1], "aws_secret_key", 1, ("aws",)))
    rules += [_Rule(pattern, "npm_token", 1, ("_authtoken",)) for pattern in NpmDetector().denylist]
    # detect-secrets' JWT pattern ends lazily (before the signature): ours takes the signature.
    rules.append(_Rule(re.compile(JwtTokenDetector.denylist[0].pattern.removesuffix("*?") + "*"), "jwt", 0, ("eyj",)))
    return tuple(rules)


_RULES = _rules()
_HINTS = tuple(sorted({hint for rule in _RULES for hint in rule.hints}))
_KEYWORD = KeywordDetector()
_KEYWORD_LINE = re.compile("|".join(KEYWORDS), re.IGNORECASE)
_KEYWORD_LOWER = re.compile("|".join(KEYWORDS))  # the same, on lower-cased text (faster)
#: Every keyword of detect-secrets' list holds one of these (tests/test_chunking.py checks).
KEYWORD_HINTS = ("key", "pass", "pwd", "secret", "contrase")
_ENTROPY: tuple[HighEntropyStringsPlugin, ...] = (Base64HighEntropyString(), HexHighEntropyString())
# A quoted run of base64 characters, then — looking back on its line — an assignment to it:
# ``name = "value"``, ``name: 'value'``, ``name := "value"``, ``name => "value"``.
_QUOTED = re.compile(r"""(['"])([A-Za-z0-9+/=_\-]{16,})\1""")
_ASSIGNMENT = re.compile(r"""[\w\]'"]\s*(?::=|=>|=|:)\s*\Z""")
_COMPARISON = ("==", "!=", "<=", ">=")
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


def find_secrets(text: str, lowered: str | None = None) -> Iterator[Found]:
    """Secret values in ``text`` distinctive enough to be replaced wherever they occur
    (private keys and keyword assignments aside: ``redact`` handles those in place)."""
    lowered = text.lower() if lowered is None else lowered
    present = {hint for hint in _HINTS if hint in lowered}
    for rule in _RULES:
        if rule.hints and present.isdisjoint(rule.hints):
            continue
        for match in rule.pattern.finditer(text):
            value = match.group(rule.group)
            if value and (rule.kind != "jwt" or JwtTokenDetector.is_formally_valid(value)):
                yield Found(rule.kind, value)
    for match in _QUOTED.finditer(text):
        value = match.group(2)
        line_start = text.rfind("\n", 0, match.start()) + 1
        before = text[max(line_start, match.start() - 200) : match.start()].rstrip()
        if before.endswith(_COMPARISON) or not _ASSIGNMENT.search(before) or _likely_placeholder(value):
            continue
        for entropy in _ENTROPY:
            if set(value) <= set(entropy.charset) and entropy.calculate_shannon_entropy(value) > entropy.entropy_limit:
                yield Found("high_entropy_string", value)
                break


def _keyword_lines(text: str, lowered: str) -> list[tuple[int, int]]:
    """(start, end) of the lines that hold a keyword hint, in order."""
    if len(lowered) != len(text):  # lower-casing changed offsets (rare letters): look at every line
        return [(m.start(), m.end()) for m in re.finditer(r"[^\n]+", text) if _KEYWORD_LINE.search(m.group(0))]
    spans: set[tuple[int, int]] = set()
    for hint in KEYWORD_HINTS:
        at = lowered.find(hint)
        while at != -1:
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            end = len(text) if end == -1 else end
            spans.add((start, end))
            at = lowered.find(hint, end)
    return sorted(spans)


def _redact_keywords(text: str, lowered: str, path: str) -> tuple[str, int]:
    """Values assigned to secret-sounding names, replaced on their own line only (a short
    password must not blank out the same word elsewhere)."""
    regexes = REGEX_BY_FILETYPE.get(determine_file_type(path), QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)
    placeholder = PLACEHOLDER.format(kind="secret")
    out: list[str] = []
    done = 0
    count = 0
    same_offsets = len(lowered) == len(text)
    for start, end in _keyword_lines(text, lowered):
        line = text[start:end]
        if same_offsets and not _KEYWORD_LOWER.search(lowered, start, end):
            continue
        if not _KEYWORD_LINE.search(line) or heuristic.is_indirect_reference(line):
            continue
        values = {v for v in _KEYWORD.analyze_string(line, denylist_regex_to_group=regexes)}
        values = {v for v in values if len(v) >= 2 and not _likely_placeholder(v)}
        if not values:
            continue
        for value in sorted(values, key=lambda v: (-len(v), v)):
            count += line.count(value)
            line = line.replace(value, placeholder)
        out.append(text[done:start])
        out.append(line)
        done = end
    if not out:
        return text, 0
    out.append(text[done:])
    return "".join(out), count


def redact(text: str, *, path: str = "") -> tuple[str, int]:
    """``text`` with every secret replaced by ``<REDACTED:kind>``, and how many replacements.
    ``path`` chooses the keyword rules (a ``.yaml`` file's differ from code's)."""
    count = 0
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
        for pattern in (_KEY_BLOCK, _KEY_HEAD, _KEY_TAIL):
            text, replaced = pattern.subn(_blank_key, text)
            count += replaced
    lowered = text.lower()
    found: dict[str, str] = {}
    for item in find_secrets(text, lowered):
        value = item.value.strip()
        if len(value) >= _MIN_VALUE and value not in found:
            found[value] = item.kind
    # Longest first, so a value inside another (a key inside a URL) is not cut in two.
    for value in sorted(found, key=lambda v: (-len(v), v)):
        placeholder = PLACEHOLDER.format(kind=found[value])
        replaced = text.count(value)
        text = text.replace(value, placeholder)
        count += replaced
    if found:
        lowered = text.lower()
    if any(hint in lowered for hint in KEYWORD_HINTS):
        text, replaced = _redact_keywords(text, lowered, path)
        count += replaced
    return text, count
