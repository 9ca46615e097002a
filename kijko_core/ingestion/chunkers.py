"""Cutting a file into chunks: the strategies ``fixed``, ``recursive``, ``semantic`` and the
``custom`` plugin hook (docs/chunking.md).

Every chunk is a run of whole lines of its file (only a line longer than the chunk size is cut
inside, at token boundaries), so ``start_line``/``end_line`` are exact and ``content`` is
exactly those lines of the file, joined by ``\\n``, without the last line break. Chunks of white
space only are never produced. The same file always gives the same chunks.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from kijko_core.errors import ValidationFailed
from kijko_core.ingestion.files import SourceFile, count_lines
from kijko_core.ingestion.tokens import TOKEN, estimate_tokens

if TYPE_CHECKING:
    from kijko_core.config import Settings

#: The entry-point group a chunker plugin registers under (docs/chunking.md#custom-chunkers).
ENTRY_POINT_GROUP = "kijko.chunkers"
#: A chunk of many small definitions names the first few, then "…".
MAX_SYMBOLS = 8


@dataclass(frozen=True)
class Chunk:
    source: str
    path: str
    language: str
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    content: str
    symbol: str | None
    token_count: int

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of ``content``."""
        return hashlib.sha256(self.content.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ChunkOptions:
    max_tokens: int
    overlap_tokens: int

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError("overlap_tokens must be at least 0 and less than max_tokens")

    @classmethod
    def from_settings(cls, settings: Settings) -> ChunkOptions:
        return cls(
            max_tokens=settings.ingestion_chunk_tokens,
            overlap_tokens=settings.ingestion_chunk_overlap_tokens,
        )


@runtime_checkable
class Chunker(Protocol):
    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]: ...


class NoCustomChunker(ValidationFailed):
    code = "CUSTOM_CHUNKER_MISSING"
    default_message = (
        "The chunking strategy 'custom' needs a chunker plugin, and none is installed; "
        "install one or choose another strategy"
    )


class InvalidChunk(ValueError):
    """A custom chunker produced a chunk that does not describe its file."""


# ---------------------------------------------------------------------------------------------
# Lines, units and packing, shared by the strategies.


class Lines:
    """A file's lines (the ones :func:`~kijko_core.ingestion.files.count_lines` counts, without
    their ``\\n``), their token counts and prefix sums."""

    def __init__(self, text: str) -> None:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # a final line break does not start another line
        self.lines = lines
        # Each token becomes one NUL (a NUL of the text is itself a token): counting NULs per
        # line gives every line's count from a single regex pass.
        marked = TOKEN.sub("\0", text).split("\n")
        self.tokens = [line.count("\0") for line in marked[: len(lines)]]
        self._sums = [0]
        for count in self.tokens:
            self._sums.append(self._sums[-1] + count)

    def __len__(self) -> int:
        return len(self.lines)

    def span_tokens(self, start: int, end: int) -> int:
        """Tokens of lines ``start``..``end`` (1-based, inclusive)."""
        return self._sums[end] - self._sums[start - 1]

    def blank(self, number: int) -> bool:
        return not self.lines[number - 1].strip()


class Unit(NamedTuple):
    """A piece of a file the packer moves around whole: lines ``start``..``end``, or — when
    ``text`` is set — a part of the single line ``start`` (a line longer than the chunk size)."""

    start: int
    end: int
    tokens: int
    symbol: str | None = None
    definition: bool = False
    comment: bool = False
    text: str | None = None
    group: int = 0  # units of one opened-up node share a group; chunks never span two


def split_line(number: int, line: str, max_tokens: int, symbol: str | None) -> list[Unit]:
    """A line cut before every ``max_tokens``-th token: parts of at most ``max_tokens`` tokens
    that join back to the line (cuts at token starts keep the counts additive)."""
    cuts = [match.start() for index, match in enumerate(TOKEN.finditer(line)) if index and index % max_tokens == 0]
    bounds = [0, *cuts, len(line)]
    parts = [line[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return [Unit(number, number, estimate_tokens(part), symbol, text=part) for part in parts]


def line_units(lines: Lines, start: int, end: int, max_tokens: int, symbol: str | None) -> list[Unit]:
    """Lines ``start``..``end`` as units, a line over ``max_tokens`` cut into parts."""
    units: list[Unit] = []
    for number in range(start, end + 1):
        if lines.blank(number):
            continue
        count = lines.tokens[number - 1]
        if count > max_tokens:
            units.extend(split_line(number, lines.lines[number - 1], max_tokens, symbol))
        else:
            units.append(Unit(number, number, count, symbol))
    return units


def joinable(before: Unit, after: Unit) -> bool:
    """Whether two units may share a chunk: whole lines with whole lines, parts of a line
    with parts of the same line (a chunk is whole lines, or a part of one line)."""
    if before.text is None and after.text is None:
        return True
    return before.text is not None and after.text is not None and before.start == after.start


def render(lines: Lines, units: Sequence[Unit]) -> str:
    """The exact text the units cover: lines between them (blank ones) included."""
    out: list[str] = []
    previous: Unit | None = None
    for unit in units:
        if previous is not None:
            if unit.start == previous.end and unit.text is not None:
                pass  # the next part of the same line
            else:
                out.append("\n")
                out.extend(line + "\n" for line in lines.lines[previous.end : unit.start - 1])
        if unit.text is not None:
            out.append(unit.text)
        else:
            out.append("\n".join(lines.lines[unit.start - 1 : unit.end]))
        previous = unit
    return "".join(out)


def make_chunk(file: SourceFile, lines: Lines, units: Sequence[Unit]) -> Chunk | None:
    content = render(lines, units)
    if not content.strip():
        return None
    # The definitions the chunk holds name it; failing those, the one it is a part of.
    symbols: list[str] = []
    for unit in units:
        if unit.definition and unit.symbol is not None and unit.symbol not in symbols:
            symbols.append(unit.symbol)
    if not symbols:
        symbols = [unit.symbol for unit in units if unit.symbol is not None][:1]
    return Chunk(
        source=file.source,
        path=file.path,
        language=file.language,
        start_line=units[0].start,
        end_line=units[-1].end,
        content=content,
        symbol=", ".join(symbols[:MAX_SYMBOLS]) + (", …" if len(symbols) > MAX_SYMBOLS else "") if symbols else None,
        token_count=sum(unit.tokens for unit in units),
    )


def pack(file: SourceFile, lines: Lines, units: Sequence[Unit], max_tokens: int) -> Iterator[Chunk]:
    """Consecutive units packed greedily into chunks of at most ``max_tokens``, with at most
    one large definition (a quarter of the size or more) each, never across groups. A unit
    over the size is cut into lines (a long line into parts) packed among themselves."""
    current: list[Unit] = []
    total = 0
    large = False

    def flush() -> Iterator[Chunk]:
        nonlocal current, total, large
        if current:
            chunk = make_chunk(file, lines, current)
            if chunk is not None:
                yield chunk
        current, total, large = [], 0, False

    for unit in units:
        if unit.tokens > max_tokens and unit.text is None:
            yield from flush()
            yield from pack(file, lines, line_units(lines, unit.start, unit.end, max_tokens, unit.symbol), max_tokens)
            continue
        is_large = unit.definition and unit.tokens * 4 >= max_tokens
        if current and (
            total + unit.tokens > max_tokens
            or (is_large and large)
            or unit.group != current[-1].group
            or not joinable(current[-1], unit)
        ):
            yield from flush()
        current.append(unit)
        total += unit.tokens
        large = large or is_large
    yield from flush()


# ---------------------------------------------------------------------------------------------
# The strategies.


class FixedChunker:
    """Windows of at most ``max_tokens`` tokens of whole lines; each window starts so that it
    repeats at most ``overlap_tokens`` tokens (whole lines) of the previous one."""

    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        lines = Lines(file.text)
        units = line_units(lines, 1, len(lines), options.max_tokens, None)
        start = 0
        while start < len(units):
            end = start  # inclusive
            total = units[start].tokens
            while (
                end + 1 < len(units)
                and total + units[end + 1].tokens <= options.max_tokens
                and joinable(units[end], units[end + 1])
            ):
                end += 1
                total += units[end].tokens
            chunk = make_chunk(file, lines, units[start : end + 1])
            if chunk is not None:
                yield chunk
            if end + 1 >= len(units):
                return
            # The next window goes back over the last units while they fit in the overlap,
            # always at least one unit further than this one (so windows advance).
            following, repeated = end + 1, 0
            while (
                following - 1 > start
                and repeated + units[following - 1].tokens <= options.overlap_tokens
                and joinable(units[following - 1], units[following])
            ):
                following -= 1
                repeated += units[following].tokens
            start = following


class RecursiveChunker:
    """Blocks of non-blank lines packed up to ``max_tokens``; a block over the size is split
    into lines, a line over the size into parts at token boundaries. No overlap."""

    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        lines = Lines(file.text)
        yield from pack(file, lines, blocks(lines), options.max_tokens)


def blocks(lines: Lines, start: int = 1, end: int | None = None, symbol: str | None = None) -> list[Unit]:
    """Runs of non-blank lines between ``start`` and ``end`` as units."""
    last = len(lines) if end is None else end
    units: list[Unit] = []
    first: int | None = None
    for number in range(start, last + 2):
        if number <= last and not lines.blank(number):
            if first is None:
                first = number
        elif first is not None:
            units.append(Unit(first, number - 1, lines.span_tokens(first, number - 1), symbol))
            first = None
    return units


def custom_chunker_names() -> list[str]:
    """Names of the installed chunker plugins, sorted."""
    return sorted({entry.name for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def custom_chunker_installed(custom: str | None = None) -> bool:
    """Whether ``chunker_for('custom', custom=custom)`` would find a plugin."""
    names = custom_chunker_names()
    return custom in names if custom else bool(names)


class CheckedChunker:
    """A plugin's chunker, its chunks checked against the file and recounted by our rule. A
    plugin that fails on a file raises InvalidChunk: the run counts the file and goes on."""

    def __init__(self, name: str, inner: Chunker) -> None:
        self.name = name
        self.inner = inner

    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        line_count = count_lines(file.text)
        produced = self.inner.chunk(file, options)
        while True:
            try:
                chunk = next(produced)
            except StopIteration:
                return
            except Exception as error:  # the plugin's bug must not end the run
                raise InvalidChunk(f"chunker plugin {self.name!r} failed: {type(error).__name__}") from error
            if not isinstance(chunk, Chunk):
                raise InvalidChunk(f"chunker plugin {self.name!r} produced something that is not a Chunk")
            if (chunk.source, chunk.path) != (file.source, file.path) or not (
                1 <= chunk.start_line <= chunk.end_line <= max(line_count, 1)
            ):
                raise InvalidChunk(f"chunker plugin {self.name!r} produced a chunk outside its file")
            yield replace(chunk, language=file.language, token_count=estimate_tokens(chunk.content))


def load_custom_chunker(custom: str | None = None) -> Chunker:
    entries = {entry.name: entry for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if custom:
        if custom not in entries:
            raise NoCustomChunker("The chunker plugin named by KIJKO_INGESTION_CUSTOM_CHUNKER is not installed")
        name = custom
    elif entries:
        name = sorted(entries)[0]  # several installed and none named: the first by name
    else:
        raise NoCustomChunker()
    loaded = entries[name].load()
    chunker = loaded() if isinstance(loaded, type) else loaded
    if not isinstance(chunker, Chunker):
        raise NoCustomChunker(f"The chunker plugin {name!r} does not provide a chunk method")
    return CheckedChunker(name, chunker)


def chunker_for(strategy: str, *, custom: str | None = None) -> Chunker:
    """The chunker of a project's ``chunkingStrategy``. ``custom`` names the plugin to use for
    ``'custom'`` (the setting KIJKO_INGESTION_CUSTOM_CHUNKER); without it the only installed
    plugin, or the first by name. Raises NoCustomChunker when there is none."""
    if strategy == "fixed":
        return FixedChunker()
    if strategy == "recursive":
        return RecursiveChunker()
    if strategy == "semantic":
        from kijko_core.ingestion.semantic import SemanticChunker

        return SemanticChunker()
    if strategy == "custom":
        return load_custom_chunker(custom)
    raise ValueError(f"unknown chunking strategy {strategy!r}")
