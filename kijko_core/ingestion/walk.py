"""The parsing phase's two steps: ``plan`` (a cheap walk that decides which files to read) and
``read`` (one file's text).

``plan`` holds only metadata (a path, a size and a language per file; never contents), so a
run streams: it plans a source, then reads and chunks one file at a time. Both are blocking
file-system work: call them in a thread (``asyncio.to_thread``). The checkout is hostile
input: nothing here follows a symbolic link, and ``read`` refuses a path that passes through
one. docs/ingestion-sources.md describes every filter and count.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pathspec

from kijko_core.ingestion import languages
from kijko_core.ingestion.fetch import Checkout
from kijko_core.ingestion.files import (
    REPOSITORY_TOO_LARGE,
    TOO_MANY_FILES,
    Caps,
    IngestionFailed,
    SourceFile,
    count_lines,
)

# Why a file was not planned (the keys of ``Plan.skipped``).
SYMLINK: Final = "symlink"  # a symbolic link (or what git recorded as one), never followed
IGNORED: Final = "ignored"  # matched by a .gitignore of the tree
EXCLUDED: Final = "excluded"  # not in includePaths, or in excludePaths
VENDORED: Final = "vendored"  # a dependency or build-output directory (node_modules/, dist/ …)
GENERATED: Final = "generated"  # lock files, minified bundles, files marked generated
BINARY: Final = "binary"  # by extension, NUL byte or magic number in the first 8 KiB
TOO_LARGE: Final = "too_large"  # larger than KIJKO_INGESTION_MAX_FILE_BYTES
SPECIAL: Final = "special"  # not a regular file (a FIFO, socket, device)
BAD_NAME: Final = "bad_name"  # a path that is not valid UTF-8 (it could not be stored)

#: Directories never walked, wherever they are in the tree: installed dependencies, build
#: output, caches and virtual environments. A skipped directory counts once.
VENDORED_DIRECTORIES: Final = frozenset(
    {
        "node_modules", "bower_components", "jspm_packages", "vendor", "Pods", "Carthage",
        "dist", "build", "out", "target", "_build", "obj",
        ".next", ".nuxt", ".svelte-kit", ".angular", ".parcel-cache", ".turbo", ".yarn",
        "__pycache__", ".venv", "venv", ".tox", ".nox", ".eggs", "site-packages",
        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".gradle", ".terraform", ".cache",
        "coverage", "htmlcov", ".hg", ".svn",
    }
)  # fmt: skip
#: Lock files and other files a tool writes for itself.
GENERATED_NAMES: Final = frozenset(
    {
        "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb",
        "bun.lock", "poetry.lock", "Pipfile.lock", "pdm.lock", "uv.lock", "Cargo.lock",
        "go.sum", "composer.lock", "Gemfile.lock", "Podfile.lock", "mix.lock", "pubspec.lock",
        "packages.lock.json", "flake.lock", "gradle.lockfile", "Package.resolved",
        ".terraform.lock.hcl", "deno.lock",
    }
)  # fmt: skip
#: Name endings of minified bundles, source maps and generated code.
GENERATED_ENDINGS: Final = (
    ".min.js", ".min.mjs", ".min.cjs", ".min.css", "-min.js", "-min.css", ".bundle.js",
    ".js.map", ".mjs.map", ".cjs.map", ".css.map",
    "_pb2.py", "_pb2_grpc.py", "_pb2.pyi", ".pb.go", ".pb.cc", ".pb.h",
)  # fmt: skip
#: A .gitignore larger than this is not read (its patterns do not apply).
GITIGNORE_MAX_BYTES: Final = 256 * 1024
#: The most .gitignore patterns and .gitattributes lines in effect for one path (the root's,
#: then deeper files', as long as they fit): every path is matched against each, so this
#: bounds a hostile tree's cost (1,000 patterns take about 0.4 ms a path).
GITIGNORE_MAX_PATTERNS: Final = 1000


@dataclass(frozen=True)
class Planned:
    """A file ``read`` will read: ``absolute`` is ``checkout.root / path`` (root resolved)."""

    source: str
    path: str
    absolute: Path
    size_bytes: int
    language: str


@dataclass
class Plan:
    files: list[Planned]
    skipped: dict[str, int] = field(default_factory=dict)  # reason → count

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


class UnreadableFile(Exception):
    """One file cannot be read as text; the run counts it in ``errorsEncountered`` and goes
    on. ``str()`` names the path and the reason (safe for logs and users)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


_Ignores = list[tuple[str, pathspec.GitIgnoreSpec]]  # (directory prefix "a/b/", its patterns)
#: The .gitattributes attributes the walk honours, and the skip reason each sets.
ATTRIBUTES: Final = {"linguist-vendored": VENDORED, "linguist-generated": GENERATED, "binary": BINARY}


@dataclass(frozen=True)
class _Attribute:
    """One line of a .gitattributes that sets or unsets attributes of :data:`ATTRIBUTES`."""

    spec: pathspec.GitIgnoreSpec
    values: tuple[tuple[str, bool], ...]


_Attributes = list[tuple[str, list[_Attribute]]]  # (directory prefix, its lines)


@dataclass(frozen=True)
class _Rules:
    """What applies in a directory: the .gitignore and .gitattributes files above it."""

    ignores: _Ignores
    attributes: _Attributes

    def patterns(self) -> int:
        return sum(len(spec.patterns) for _, spec in self.ignores) + sum(len(a) for _, a in self.attributes)


def _parse_attributes(text: str) -> list[_Attribute]:
    """The lines of a .gitattributes that concern :data:`ATTRIBUTES` (``name``,
    ``name=true``: set; ``-name``, ``name=false``, ``!name``: unset)."""
    lines: list[_Attribute] = []
    for line in text.splitlines():
        pattern, *attributes = line.split() or ["#"]
        # Comments, macros, quoted names and negative patterns (git refuses those) are skipped.
        if pattern.startswith(("#", "[attr]", '"', "!")) or not attributes:
            continue
        values: list[tuple[str, bool]] = []
        for attribute in attributes:
            name, _, value = attribute.lstrip("-!").partition("=")
            if name in ATTRIBUTES:
                unset = attribute.startswith(("-", "!")) or value.lower() in ("false", "0")
                values.append((name, not unset))
        if values:
            lines.append(_Attribute(gitignore_spec([pattern]), tuple(values)))
    return lines


def _attribute_skip(attributes: _Attributes, path: str) -> str | None:
    """The skip reason .gitattributes give ``path``: every matching line from the root's file
    to the deepest, the last one setting an attribute wins."""
    state: dict[str, bool] = {}
    for prefix, lines in attributes:
        if path.startswith(prefix):
            relative = path[len(prefix) :]
            for line in lines:
                if line.spec.match_file(relative):
                    state.update(line.values)
    for name, reason in ATTRIBUTES.items():
        if state.get(name):
            return reason
    return None


def gitignore_spec(lines: Sequence[str]) -> pathspec.GitIgnoreSpec:
    """Patterns of a hostile repository (or of a tenant's include/exclude paths) matched by
    RE2, in time linear in the path: pathspec's default ``re`` backtracks, and one line such
    as ``*a*a*a*a*a*a*a*a*a*a*b`` against a name of 40 ``a`` took minutes, holding the GIL
    (the worker's whole event loop, its lease and cancel included). Named explicitly so that a
    missing google-re2 fails the run instead of falling back to ``re``."""
    return pathspec.GitIgnoreSpec.from_lines(lines, backend="re2")


def _spec(patterns: Sequence[str]) -> pathspec.GitIgnoreSpec | None:
    lines = [p for p in patterns if p.strip()]
    return gitignore_spec(lines) if lines else None


def _ignored(ignores: _Ignores, path: str) -> bool:
    """git's rule: the deepest .gitignore with a matching pattern decides (its last match)."""
    for prefix, spec in reversed(ignores):
        if path.startswith(prefix):
            include = spec.check_file(path[len(prefix) :]).include
            if include is not None:
                return include
    return False


def _open_regular(path: str | Path) -> int:
    """A descriptor of the regular file at ``path``; refuses a symlink as the last component."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError("not a regular file")
    return fd


def _head(path: str) -> bytes:
    fd = _open_regular(path)
    try:
        return os.read(fd, languages.HEAD_BYTES)
    finally:
        os.close(fd)


def _read_small(entry: os.DirEntry[str]) -> str | None:
    """A .gitignore's or .gitattributes' text; None when larger than GITIGNORE_MAX_BYTES."""
    try:
        if entry.stat(follow_symlinks=False).st_size > GITIGNORE_MAX_BYTES:
            return None
        fd = _open_regular(entry.path)
        with os.fdopen(fd, "rb") as handle:
            return handle.read(GITIGNORE_MAX_BYTES).decode("utf-8", "replace")
    except OSError:
        return None


def _read_rules(prefix: str, entries: list[os.DirEntry[str]], inherited: _Rules, links: frozenset[str]) -> _Rules:
    """``inherited`` with this directory's .gitignore and .gitattributes added, each as long as
    the patterns in effect stay within GITIGNORE_MAX_PATTERNS (else that file does not apply)."""
    rules = inherited
    for entry in entries:
        if entry.name not in (".gitignore", ".gitattributes") or f"{prefix}{entry.name}" in links:
            continue
        if not entry.is_file(follow_symlinks=False) or (text := _read_small(entry)) is None:
            continue
        if entry.name == ".gitignore":
            spec = _spec([line for line in text.splitlines() if not line.startswith("#")])  # (comments)
            if spec is not None and rules.patterns() + len(spec.patterns) <= GITIGNORE_MAX_PATTERNS:
                rules = _Rules([*rules.ignores, (prefix, spec)], rules.attributes)
        else:
            lines = _parse_attributes(text)
            if lines and rules.patterns() + len(lines) <= GITIGNORE_MAX_PATTERNS:
                rules = _Rules(rules.ignores, [*rules.attributes, (prefix, lines)])
    return rules


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")  # undecodable bytes of a name are surrogates here
    except UnicodeEncodeError:
        return False
    return True


def _generated_name(name: str) -> bool:
    return name in GENERATED_NAMES or name.lower().endswith(GENERATED_ENDINGS)


def plan(checkout: Checkout, *, include: Sequence[str] = (), exclude: Sequence[str] = (), caps: Caps) -> Plan:
    """The files of ``checkout`` to read and what was skipped and why.

    The walk is depth first with each directory's entries in name order (a subdirectory's
    files come where its name sorts), so the plan's order is the same on every run.
    ``include``/``exclude`` are gitignore-style patterns relative to the root (a repository's
    ``includePaths``/``excludePaths``; no include pattern means everything). Raises
    ``IngestionFailed`` with ``TOO_MANY_FILES`` or ``REPOSITORY_TOO_LARGE`` as soon as the
    planned files pass ``caps.max_files`` or ``caps.max_total_bytes``, or the entries listed
    pass ``caps.entries_limit``.
    """
    return _Walk(checkout, _spec(include), _spec(exclude), caps).run()


class _Walk:
    def __init__(
        self,
        checkout: Checkout,
        wanted: pathspec.GitIgnoreSpec | None,
        unwanted: pathspec.GitIgnoreSpec | None,
        caps: Caps,
    ) -> None:
        self.checkout = checkout
        self.source = checkout.source
        self.root = checkout.root.resolve()
        self.wanted = wanted
        self.unwanted = unwanted
        self.caps = caps
        self.files: list[Planned] = []
        self.skipped: Counter[str] = Counter()
        self.total = 0
        self.listed = 0
        # The directories being walked: (prefix "a/b/", the .gitignore files in effect, the
        # entries not yet seen). An explicit stack: a hostile tree may nest deeper than
        # Python recurses.
        self.stack: list[tuple[str, _Rules, Iterator[os.DirEntry[str]]]] = []

    def run(self) -> Plan:
        self._enter("", _Rules([], []))
        while self.stack:
            prefix, rules, entries = self.stack[-1]
            entry = next(entries, None)
            if entry is None:
                self.stack.pop()
            else:
                self._visit(prefix, rules, entry)
        return Plan(files=self.files, skipped=dict(self.skipped))

    def _enter(self, prefix: str, inherited: _Rules) -> None:
        most = self.caps.entries_limit
        try:
            with os.scandir(self.root / prefix if prefix else self.root) as listing:
                batch = list(itertools.islice(listing, most - self.listed + 1))
        except OSError:
            return
        self.listed += len(batch)
        if self.listed > most:
            raise IngestionFailed(
                TOO_MANY_FILES,
                f"{self.source} has more than {most:,} files and directories to look at; narrow it with excludePaths",
            )
        entries = sorted(batch, key=lambda e: e.name)
        rules = _read_rules(prefix, entries, inherited, self.checkout.symlinks)
        self.stack.append((prefix, rules, iter(entries)))

    def _visit(self, prefix: str, rules: _Rules, entry: os.DirEntry[str]) -> None:
        path = prefix + entry.name
        if entry.name == ".git":
            return  # git's own data (of our clone; git never checks out a ".git"), not counted
        if entry.is_symlink() or path in self.checkout.symlinks:
            self.skipped[SYMLINK] += 1
        elif not _storable(path):
            self.skipped[BAD_NAME] += 1
        elif entry.is_dir(follow_symlinks=False):
            reason = _directory_skip(entry.name, path + "/", rules.ignores, self.unwanted)
            if reason is not None:
                self.skipped[reason] += 1
            else:
                self._enter(path + "/", rules)
        elif not entry.is_file(follow_symlinks=False):
            self.skipped[SPECIAL] += 1
        else:
            found = _consider(self.source, self.root, entry, path, rules, self.wanted, self.unwanted, self.caps)
            if isinstance(found, str):
                self.skipped[found] += 1
            else:
                self._add(found)

    def _add(self, planned: Planned) -> None:
        self.files.append(planned)
        self.total += planned.size_bytes
        if len(self.files) > self.caps.max_files:
            raise IngestionFailed(
                TOO_MANY_FILES,
                f"{self.source} has more than {self.caps.max_files:,} files to read "
                "(after .gitignore, include/exclude paths and the skipped kinds); "
                "narrow it with excludePaths or includePaths",
            )
        if self.total > self.caps.max_total_bytes:
            raise IngestionFailed(
                REPOSITORY_TOO_LARGE,
                f"{self.source} has more than {_mib(self.caps.max_total_bytes)} of files to read; "
                "narrow it with excludePaths or includePaths",
            )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"


def _directory_skip(name: str, path: str, ignores: _Ignores, unwanted: pathspec.GitIgnoreSpec | None) -> str | None:
    if _ignored(ignores, path):
        return IGNORED
    if name in VENDORED_DIRECTORIES:
        return VENDORED
    if unwanted is not None and unwanted.match_file(path):
        return EXCLUDED
    return None


def _consider(
    source: str,
    root: Path,
    entry: os.DirEntry[str],
    path: str,
    rules: _Rules,
    wanted: pathspec.GitIgnoreSpec | None,
    unwanted: pathspec.GitIgnoreSpec | None,
    caps: Caps,
) -> Planned | str:
    """The planned file, or why it is skipped; cheapest checks first, the head read last."""
    if _ignored(rules.ignores, path):
        return IGNORED
    if (wanted is not None and not wanted.match_file(path)) or (unwanted is not None and unwanted.match_file(path)):
        return EXCLUDED
    if (marked := _attribute_skip(rules.attributes, path)) is not None:
        return marked
    if _generated_name(entry.name):
        return GENERATED
    if languages.binary_by_name(entry.name):
        return BINARY
    try:
        size = entry.stat(follow_symlinks=False).st_size
        if size > caps.max_file_bytes:
            return TOO_LARGE
        head = _head(entry.path)
    except OSError:
        return SPECIAL  # vanished or not a regular file any more
    if languages.binary_by_head(head):
        return BINARY
    language = languages.language_of(entry.name, head)
    if languages.generated_by_head(head, language):
        return GENERATED
    return Planned(source=source, path=path, absolute=root / path, size_bytes=size, language=language)


def read(planned: Planned) -> SourceFile:
    """The file's text (UTF-8, a BOM removed) with exact byte and line counts; raises
    ``UnreadableFile`` when it is not UTF-8 text, holds a NUL character (PostgreSQL text
    cannot), changed size since it was planned, or its path passes through a symlink."""
    parent = str(planned.absolute.parent)
    try:
        if os.path.realpath(parent) != parent:
            raise UnreadableFile(planned.path, "its directory is reached through a symbolic link")
        fd = _open_regular(planned.absolute)
    except OSError:
        raise UnreadableFile(planned.path, "cannot be opened as a regular file") from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(planned.size_bytes + 1)
    if len(data) != planned.size_bytes:
        raise UnreadableFile(planned.path, "changed while it was being read")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableFile(planned.path, f"not UTF-8 text (invalid byte at offset {error.start})") from None
    if "\x00" in text:
        raise UnreadableFile(planned.path, "holds a NUL character (binary data)")
    return SourceFile(
        source=planned.source,
        path=planned.path,
        language=planned.language,
        size_bytes=planned.size_bytes,
        line_count=count_lines(text),
        text=text,
    )
