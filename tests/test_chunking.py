"""Chunking strategies, the chunker plugin hook and the optimization phase (docs/chunking.md)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kijko_core.config import load_settings
from kijko_core.errors import ConfigurationError, ValidationFailed
from kijko_core.ingestion.chunkers import (
    Chunk,
    ChunkOptions,
    NoCustomChunker,
    chunker_for,
    custom_chunker_installed,
)
from kijko_core.ingestion.files import SourceFile
from kijko_core.ingestion.optimize import Optimizer, metadata_header
from kijko_core.ingestion.secrets import redact
from kijko_core.ingestion.semantic import SEMANTIC_MAX_LINES
from kijko_core.ingestion.tokens import estimate_tokens


def source(text: str, path: str = "src/sample.py", language: str = "python") -> SourceFile:
    return SourceFile(
        source="owner/repo",
        path=path,
        language=language,
        size_bytes=len(text.encode()),
        line_count=len(text.splitlines()),
        text=text,
    )


def chunks_of(strategy: str, file: SourceFile, max_tokens: int = 512, overlap: int = 0) -> list[Chunk]:
    return list(chunker_for(strategy).chunk(file, ChunkOptions(max_tokens=max_tokens, overlap_tokens=overlap)))


def spans(chunks: list[Chunk]) -> list[tuple[int, int]]:
    return [(c.start_line, c.end_line) for c in chunks]


def check(file: SourceFile, chunks: list[Chunk], max_tokens: int) -> None:
    """What every strategy promises: exact lines, exact content, counts by the one rule,
    nothing over the size (a long line aside, cut), every non-blank line covered."""
    lines = file.text.split("\n")
    covered: set[int] = set()
    for chunk in chunks:
        assert (chunk.source, chunk.path, chunk.language) == (file.source, file.path, file.language)
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        whole = "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        if chunk.start_line == chunk.end_line:
            assert chunk.content in whole
        else:
            assert chunk.content == whole
        assert chunk.content.strip()
        assert chunk.token_count == estimate_tokens(chunk.content) <= max_tokens
        assert len(chunk.content_hash) == 64
        covered.update(range(chunk.start_line, chunk.end_line + 1))
    assert {n for n, line in enumerate(lines, 1) if line.strip()} <= covered


PYTHON = textwrap.dedent(
    '''\
    """A module."""

    import os
    import sys


    def small(a, b):
        return a + b


    class Store:
        """Keeps things."""

        def __init__(self, root):
            self.root = root
            self.items = {}

        def put(self, key, value):
            self.items[key] = value
            return len(self.items)

        def get(self, key):
            return self.items.get(key)


    @decorated
    def loader(path):
        with open(path) as handle:
            return handle.read()
    '''
)

TYPESCRIPT = textwrap.dedent(
    """\
    import { readFile } from "fs";

    export interface User {
      id: string;
      name: string;
    }

    export function greet(user: User): string {
      const prefix = "Hello";
      return `${prefix}, ${user.name}`;
    }

    export const shout = (text: string): string => {
      return text.toUpperCase() + "!";
    };

    class Counter {
      private count = 0;
      increment(): number {
        this.count += 1;
        return this.count;
      }
    }
    """
)

GO = textwrap.dedent(
    """\
    package main

    import "fmt"

    type Point struct {
    \tX int
    \tY int
    }

    func (p Point) Sum() int {
    \treturn p.X + p.Y
    }

    func main() {
    \tp := Point{X: 1, Y: 2}
    \tfmt.Println(p.Sum())
    }
    """
)

MARKDOWN = textwrap.dedent(
    """\
    # Title

    The first paragraph has a few words in it.
    It goes over two lines.

    ## Section

    - one item
    - two items

    The last paragraph.
    """
)


# ---------------------------------------------------------------------------------------------
# The token rule.


def test_the_token_rule_counts_word_pieces_and_punctuation() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("   \n\t ") == 0
    assert estimate_tokens("def load_file(path):") == 7  # def load_f ile ( path ) :
    assert estimate_tokens("x = 1") == 3
    assert estimate_tokens("abcdefghijklm") == 3  # six, six, one


def test_the_token_rule_is_additive_over_lines() -> None:
    for text in (PYTHON, TYPESCRIPT, GO, MARKDOWN):
        assert estimate_tokens(text) == sum(estimate_tokens(line) for line in text.split("\n"))


# ---------------------------------------------------------------------------------------------
# fixed


def test_fixed_windows_have_exact_lines_and_overlap() -> None:
    file = source(PYTHON)
    chunks = chunks_of("fixed", file, max_tokens=40, overlap=10)
    check(file, chunks, 40)
    assert len(chunks) > 3
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.start_line < after.start_line
        if after.start_line <= before.end_line:
            repeated = "\n".join(PYTHON.split("\n")[after.start_line - 1 : before.end_line])
            assert 0 < estimate_tokens(repeated) <= 10
    # With these numbers at least one window repeats lines of the one before.
    assert any(a.start_line <= b.end_line for b, a in zip(chunks, chunks[1:], strict=False))


def test_fixed_windows_fill_up_to_the_size() -> None:
    text = "".join(f"v{n:02d} = {n:02d} + 1\n" for n in range(1, 21))  # 5 tokens a line
    chunks = chunks_of("fixed", source(text), max_tokens=20, overlap=5)
    assert spans(chunks) == [(1, 4), (4, 7), (7, 10), (10, 13), (13, 16), (16, 19), (19, 20)]
    assert [c.token_count for c in chunks] == [20, 20, 20, 20, 20, 20, 10]
    without = chunks_of("fixed", source(text), max_tokens=20, overlap=0)
    assert spans(without) == [(1, 4), (5, 8), (9, 12), (13, 16), (17, 20)]


def test_a_line_longer_than_a_chunk_is_cut_at_token_boundaries() -> None:
    long_line = " ".join(f"word{n}" for n in range(100))  # 100 tokens
    text = f"first = 1\n{long_line}\nlast = 2\n"
    for strategy in ("fixed", "recursive", "semantic"):
        chunks = chunks_of(strategy, source(text), max_tokens=30)
        check(source(text), chunks, 30)
        parts = [c for c in chunks if c.start_line == c.end_line == 2]
        assert "".join(p.content for p in parts) == long_line, strategy


def test_empty_and_blank_files_have_no_chunks() -> None:
    for strategy in ("fixed", "recursive", "semantic"):
        assert chunks_of(strategy, source("")) == []
        assert chunks_of(strategy, source("\n\n   \n")) == []


# ---------------------------------------------------------------------------------------------
# recursive


def test_recursive_keeps_blocks_whole_and_packs_them() -> None:
    file = source(MARKDOWN, "README.md", "markdown")
    # Everything fits: one chunk from the first to the last non-blank line.
    assert spans(chunks_of("recursive", file)) == [(1, 11)]
    # Blocks (tokens): line 1 (2), lines 3-4 (11 + 6), line 6 (3), lines 8-9 (6), line 11 (5).
    assert spans(chunks_of("recursive", file, max_tokens=20)) == [(1, 4), (6, 11)]
    # A block over the size is cut into lines, packed among themselves.
    assert spans(chunks_of("recursive", file, max_tokens=15)) == [(1, 1), (3, 3), (4, 4), (6, 11)]
    check(file, chunks_of("recursive", file, max_tokens=15), 15)


def test_recursive_splits_a_block_over_the_size_into_lines() -> None:
    text = "".join(f"v{n:02d} = {n:02d} + 1\n" for n in range(1, 11))  # one block, 50 tokens
    chunks = chunks_of("recursive", source(text), max_tokens=12)
    assert spans(chunks) == [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]
    check(source(text), chunks, 12)


def test_recursive_chunks_do_not_overlap() -> None:
    for text in (PYTHON, TYPESCRIPT, GO, MARKDOWN):
        chunks = chunks_of("recursive", source(text), max_tokens=25)
        check(source(text), chunks, 25)
        for before, after in zip(chunks, chunks[1:], strict=False):
            assert before.end_line < after.start_line


# ---------------------------------------------------------------------------------------------
# semantic


def semantic(text: str, language: str, max_tokens: int) -> list[tuple[int, int, str | None]]:
    file = source(text, "f", language)
    chunks = chunks_of("semantic", file, max_tokens=max_tokens)
    check(file, chunks, max_tokens)
    return [(c.start_line, c.end_line, c.symbol) for c in chunks]


def test_semantic_follows_functions_and_classes_in_python() -> None:
    # Everything fits: one chunk, named by its definitions.
    assert semantic(PYTHON, "python", 512) == [(1, 29, "small, Store, loader")]
    # The class is over the size: opened into its methods; the small function joins the imports.
    assert semantic(PYTHON, "python", 60) == [
        (1, 8, "small"),
        (11, 16, "Store.__init__"),
        (18, 20, "Store.put"),
        (22, 23, "Store.get"),
        (26, 29, "loader"),  # with its decorator
    ]


def test_semantic_in_typescript_and_go() -> None:
    assert semantic(TYPESCRIPT, "typescript", 60) == [(1, 11, "User, greet"), (13, 15, "shout"), (17, 23, "Counter")]
    assert semantic(TYPESCRIPT, "typescript", 25) == [
        (1, 6, "User"),
        (8, 9, "greet"),  # a function over the size, cut between its statements
        (10, 11, "greet"),
        (13, 13, "shout"),
        (14, 15, "shout"),
        (17, 18, "Counter"),
        (19, 23, "Counter.increment"),
    ]
    assert semantic(GO, "go", 60) == [(1, 12, "Point, Sum"), (14, 17, "main")]


def test_a_comment_above_a_definition_stays_with_it() -> None:
    text = (
        "from os import getcwd, path, sep, environ, listdir\n\n\n"
        "# Loads the thing.\n# Carefully.\ndef load():\n    return getcwd() + '/thing/and/more/words'\n"
    )
    assert semantic(text, "python", 40) == [(1, 1, None), (4, 7, "load")]


def test_a_chunk_of_many_small_definitions_names_the_first_eight() -> None:
    text = "".join(f"def f{n}():\n    pass\n\n\n" for n in range(12))
    assert semantic(text, "python", 512) == [(1, 46, "f0, f1, f2, f3, f4, f5, f6, f7, …")]


def test_semantic_pieces_of_a_large_function_stay_within_the_size() -> None:
    body = "".join(f"    value_{n} = compute({n}, {n + 1})\n" for n in range(200))
    text = f"def huge():\n{body}    return value_0\n\n\ndef tiny():\n    return 1\n"
    chunks = semantic(text, "python", 100)
    assert len(chunks) > 10
    assert {symbol for *_, symbol in chunks[:-1]} == {"huge"}
    assert chunks[-1][2] == "tiny"


def test_semantic_survives_deep_nesting_and_broken_code() -> None:
    deep = "x = " + "(" * 3000 + "1" + ")" * 3000 + "\n"
    assert semantic(deep, "python", 64)
    broken = "def broken(:\n    return ]]]\n\nclass {\n"
    assert semantic(broken, "python", 64)


def test_languages_without_a_grammar_fall_back_to_recursive() -> None:
    for language in ("markdown", "text", "yaml", "unknown"):
        file = source(MARKDOWN, "README.md", language)
        assert chunks_of("semantic", file, max_tokens=15) == chunks_of("recursive", file, max_tokens=15)


SAMPLES = {
    "javascript": ("const add = (a, b) => a + b;\n\nfunction mul(a, b) {\n  return a * b;\n}\n", "add, mul"),
    "tsx": ("export function App() {\n  return <div>hi</div>;\n}\n", "App"),
    "rust": ('struct Point { x: i32 }\n\nfn main() {\n    println!("hi");\n}\n', "Point, main"),
    "java": ('class Greeter {\n    String greet() { return "hi"; }\n}\n', "Greeter"),
    "c": ("static int add(int a, int b) {\n    return a + b;\n}\n", "add"),
    "cpp": ("namespace app {\nclass Box {};\n}\n", "app"),
    "ruby": ("module Shop\n  def total\n    1\n  end\nend\n", "Shop"),
    "php": ("<?php\nfunction greet($n) {\n    return 1;\n}\n", "greet"),
    "csharp": ("public class Calc {\n  public int Add() { return 1; }\n}\n", "Calc"),
    "bash": ("deploy() {\n  echo deploy\n}\n", "deploy"),
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_each_mapped_language_has_a_working_grammar(language: str) -> None:
    text, symbols = SAMPLES[language]
    assert semantic(text, language, 512)[0][2] == symbols


def test_grammars_load_offline_from_their_wheels(tmp_path: Path) -> None:
    """Nothing is fetched or cached at run time: an empty home and cache, and — where the
    machine allows it — no network at all."""
    import shutil
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    script = (
        "from kijko_core.ingestion.semantic import GRAMMARS, grammar\n"
        "missing = [name for name in GRAMMARS if grammar(name) is None]\n"
        "assert not missing, missing\n"
        "print('ok')\n"
    )
    command = [sys.executable, "-c", script]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        command = [unshare, "-rn", *command]
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
    assert list(home.iterdir()) == []


def test_odd_text_keeps_every_promise() -> None:
    """Fragments of the samples mixed with CR, form feeds, U+2028, NUL, emoji, long lines and
    half a private key: every strategy, several sizes, the invariants of ``check``."""
    import random

    pieces = [PYTHON, TYPESCRIPT, GO, MARKDOWN, "\r\n", "\r", "\x0c", "\u2028", "\x00", "é", "😀", "{", "}"]
    pieces += [
        '"""',
        "'",
        "\n\n",
        "    ",
        "\t",
        "class X:",
        "x" * 300,
        " y" * 300,
        "-----BEGIN RSA PRIVATE KEY-----\na\n",
    ]
    rng = random.Random(7)
    for _ in range(40):
        text = "".join(rng.choice(pieces)[: rng.randint(0, 120)] for _ in range(rng.randint(0, 30)))
        for language in ("python", "typescript", "go", "c", "markdown"):
            for strategy in ("fixed", "recursive", "semantic"):
                size = rng.choice([16, 40, 200])
                file = source(text, "f", language)
                check(file, chunks_of(strategy, file, max_tokens=size, overlap=rng.randint(0, size - 1)), size)


# ---------------------------------------------------------------------------------------------
# Determinism


@pytest.mark.parametrize("strategy", ["fixed", "recursive", "semantic"])
def test_chunking_is_deterministic(strategy: str) -> None:
    for text, language in ((PYTHON, "python"), (TYPESCRIPT, "typescript"), (GO, "go"), (MARKDOWN, "markdown")):
        file = source(text, "f", language)
        first = chunks_of(strategy, file, max_tokens=30, overlap=8 if strategy == "fixed" else 0)
        again = chunks_of(strategy, source(text, "f", language), max_tokens=30, overlap=8 if strategy == "fixed" else 0)
        assert first == again
        assert [c.content_hash for c in first] == [c.content_hash for c in again]


DIGEST = """
import hashlib
from kijko_core.ingestion.chunkers import ChunkOptions, chunker_for
from kijko_core.ingestion.files import SourceFile
from kijko_core.ingestion.optimize import Optimizer
from tests.test_chunking import GO, MARKDOWN, PYTHON, SECRETS, TYPESCRIPT

digest = hashlib.sha256()
for strategy in ("fixed", "recursive", "semantic"):
    optimizer = Optimizer(anonymize_secrets=True, include_metadata=True)
    for n, (text, language) in enumerate(
        ((PYTHON, "python"), (TYPESCRIPT, "typescript"), (GO, "go"), (MARKDOWN, "markdown"), (SECRETS, "python"))
    ):
        file = SourceFile("o/r", f"f{n}", language, len(text), text.count("\\n"), text)
        for chunk in chunker_for(strategy).chunk(file, ChunkOptions(max_tokens=30, overlap_tokens=8)):
            stored = optimizer.optimize(chunk)
            if stored is not None:
                digest.update(f"{stored.start_line}:{stored.end_line}:{stored.symbol}:{stored.content_hash};".encode())
print(digest.hexdigest())
"""


def test_chunks_and_their_hashes_are_the_same_in_every_process() -> None:
    """A retried run (another worker, another hash seed) stores the same chunks."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    outputs = {
        subprocess.run(
            [sys.executable, "-c", DIGEST],
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=root,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert len(outputs.pop().strip()) == 64


def test_the_content_hash_is_the_sha256_of_the_content() -> None:
    import hashlib

    chunk = chunks_of("recursive", source("x = 1\n"))[0]
    assert chunk.content == "x = 1"
    assert chunk.content_hash == hashlib.sha256(b"x = 1").hexdigest()


# ---------------------------------------------------------------------------------------------
# Options and settings


def test_options_come_from_the_settings_and_overlap_stays_below_the_size() -> None:
    settings = load_settings(ingestion_chunk_tokens=256, ingestion_chunk_overlap_tokens=32)
    assert ChunkOptions.from_settings(settings) == ChunkOptions(max_tokens=256, overlap_tokens=32)
    defaults = ChunkOptions.from_settings(load_settings())
    assert defaults == ChunkOptions(max_tokens=512, overlap_tokens=64)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(ingestion_chunk_tokens=64, ingestion_chunk_overlap_tokens=64)
    assert refused.value.problems == [
        "KIJKO_INGESTION_CHUNK_OVERLAP_TOKENS: must be less than KIJKO_INGESTION_CHUNK_TOKENS"
    ]
    with pytest.raises(ValueError):
        ChunkOptions(max_tokens=10, overlap_tokens=10)


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError):
        chunker_for("magic")


# ---------------------------------------------------------------------------------------------
# The custom chunker hook, through a real entry point.


class ParagraphChunker:
    """Test plugin: one chunk per file, with a made-up token count (which Kijko recounts)."""

    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        lines = file.text.split("\n")
        yield Chunk(file.source, file.path, "wrong", 1, len(lines) - 1, file.text.rstrip("\n"), "whole", 999)


class FailingChunker:
    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        yield from chunker_for("recursive").chunk(file, options)
        raise KeyError("a bug in the plugin")


class OutsideChunker:
    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        yield Chunk(file.source, file.path, file.language, 5, 900, "x", None, 1)


def install_plugin(site: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str]) -> None:
    """Chunker plugins registered as an installed distribution would register them."""
    info = site / "kijko_test_chunkers-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kijko-test-chunkers\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[kijko.chunkers]\n{lines}")
    monkeypatch.syspath_prepend(str(site))


def test_without_a_plugin_custom_is_a_422() -> None:
    assert not custom_chunker_installed()
    with pytest.raises(NoCustomChunker) as refused:
        chunker_for("custom")
    assert isinstance(refused.value, ValidationFailed)
    assert refused.value.status == 422
    assert refused.value.to_body()["code"] == "CUSTOM_CHUNKER_MISSING"


def test_a_plugin_registered_under_the_entry_point_group_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path, monkeypatch, {"paragraphs": "tests.test_chunking:ParagraphChunker"})
    assert custom_chunker_installed()
    text = "alpha beta\n\ngamma\n"
    chunks = chunks_of("custom", source(text))
    assert chunks == [Chunk("owner/repo", "src/sample.py", "python", 1, 3, "alpha beta\n\ngamma", "whole", 3)]


def test_with_several_plugins_the_setting_chooses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(
        tmp_path,
        monkeypatch,
        {"zeta": "tests.test_chunking:ParagraphChunker", "alpha": "tests.test_chunking:OutsideChunker"},
    )
    options = ChunkOptions(max_tokens=100, overlap_tokens=0)
    file = source("one\ntwo\n")
    # Named: that one.
    assert [c.symbol for c in chunker_for("custom", custom="zeta").chunk(file, options)] == ["whole"]
    assert custom_chunker_installed("zeta")
    assert not custom_chunker_installed("missing")
    with pytest.raises(NoCustomChunker):
        chunker_for("custom", custom="missing")
    # Unnamed: the first by name, here one whose chunks lie about their lines — refused.
    from kijko_core.ingestion.chunkers import InvalidChunk

    with pytest.raises(InvalidChunk):
        list(chunker_for("custom").chunk(file, options))


def test_a_failing_plugin_fails_the_file_with_invalid_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kijko_core.ingestion.chunkers import InvalidChunk

    install_plugin(tmp_path, monkeypatch, {"failing": "tests.test_chunking:FailingChunker"})
    with pytest.raises(InvalidChunk) as failed:
        list(chunker_for("custom").chunk(source("one\n"), ChunkOptions(max_tokens=100, overlap_tokens=0)))
    assert str(failed.value) == "chunker plugin 'failing' failed: KeyError"
    assert isinstance(failed.value.__cause__, KeyError)


PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def test_the_example_plugin_cuts_markdown_at_its_headings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plugins/kijko-markdown-sections, registered the way its setup.cfg declares it."""
    plugin = PLUGINS / "kijko-markdown-sections"
    declared = (plugin / "setup.cfg").read_text()
    assert "kijko.chunkers =\n    markdown-sections = kijko_markdown_sections:MarkdownSections" in declared
    monkeypatch.syspath_prepend(str(plugin))
    install_plugin(tmp_path, monkeypatch, {"markdown-sections": "kijko_markdown_sections:MarkdownSections"})
    file = source(MARKDOWN + "\n```sh\n# not a heading\nls\n```\n", "README.md", "markdown")
    chunks = chunks_of("custom", file, max_tokens=100)
    check(file, chunks, 100)
    assert [(c.start_line, c.end_line, c.symbol) for c in chunks] == [(1, 4, "Title"), (6, 16, "Section")]
    # A section over the size: cut by the recursive chunker, lines still those of the file.
    small = chunks_of("custom", file, max_tokens=12)
    check(file, small, 12)
    assert [(c.start_line, c.end_line, c.symbol) for c in small][:3] == [
        (1, 1, "Title"),
        (3, 3, "Title"),
        (4, 4, "Title"),
    ]
    # Not Markdown: Kijko's recursive chunker.
    assert chunks_of("custom", source(PYTHON), max_tokens=40) == chunks_of("recursive", source(PYTHON), max_tokens=40)


# ---------------------------------------------------------------------------------------------
# Secrets


AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PRIVATE_KEY = textwrap.dedent(
    """\
    -----BEGIN RSA PRIVATE KEY-----
    MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun
    VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK
    LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo
    -----END RSA PRIVATE KEY-----"""
)
SECRETS = f'''import boto3

AWS_ACCESS_KEY_ID = "{AWS_KEY}"
aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
password = "hunter22"
DATABASE_URL = "postgres://app:s3cr3t-pass@db.internal/app"
GITHUB = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
SESSION = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
signing = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
KEY = """{PRIVATE_KEY}"""


def connect():
    return boto3.client("s3")
'''
PLANTED = [
    AWS_KEY,
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "hunter22",
    "s3cr3t-pass",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo",
]


def test_each_secret_is_replaced_by_a_typed_placeholder() -> None:
    redacted, count = redact(SECRETS, path="settings.py")
    for secret in PLANTED:
        assert secret not in redacted
    placeholders = re.findall(r"<REDACTED:(\w+)>", redacted)
    assert placeholders == [
        "aws_access_key",
        "aws_secret_key",
        "secret",
        "basic_auth_password",
        "github_token",
        "slack_token",
        "stripe_key",
        "jwt",
        "high_entropy_string",
        "private_key",
    ]
    assert count == 10
    # The code around them stays, and so do the line numbers.
    assert redacted.count("\n") == SECRETS.count("\n")
    assert 'AWS_ACCESS_KEY_ID = "<REDACTED:aws_access_key>"' in redacted
    assert 'KEY = """<REDACTED:private_key>' in redacted
    assert 'return boto3.client("s3")' in redacted


def test_every_keyword_of_detect_secrets_has_a_hint() -> None:
    from detect_secrets.plugins.keyword import DENYLIST

    from kijko_core.ingestion.secrets import KEYWORD_HINTS

    assert [word for word in DENYLIST if not any(hint in word for hint in KEYWORD_HINTS)] == []


def test_configuration_files_need_no_quotes() -> None:
    assert redact("db:\n  password: hunter22\n  user: app\n", path="config/db.yaml") == (
        "db:\n  password: <REDACTED:secret>\n  user: app\n",
        1,
    )
    assert redact("DB_PASSWORD=hunter22\nPORT=80\n", path="app/.env.production") == (
        "DB_PASSWORD=<REDACTED:secret>\nPORT=80\n",
        1,
    )
    script = "export API_KEY=abcdef123456\necho $PASSWORD\nPASSWORD=$(cat /run/secret)\n"
    assert redact(script, path="deploy.sh") == (
        "export API_KEY=<REDACTED:secret>\necho $PASSWORD\nPASSWORD=$(cat /run/secret)\n",
        1,
    )


def test_ordinary_code_is_left_alone() -> None:
    for text in (PYTHON, TYPESCRIPT, GO, MARKDOWN):
        assert redact(text, path="x") == (text, 0)
    ordinary = textwrap.dedent(
        """\
        password = os.environ["PASSWORD"]
        token = get_token()
        secret = "${SECRET}"
        version = "1.2.3-beta.4+build.5678"
        api_key = "<your key here>"
        """
    )
    assert redact(ordinary, path="app.py") == (ordinary, 0)


def test_a_private_key_cut_in_two_by_chunking_is_redacted_in_both_halves() -> None:
    text = f"KEY = '''{PRIVATE_KEY}'''\nprint(KEY)\n"
    file = source(text)
    chunks = chunks_of("fixed", file, max_tokens=60, overlap=0)
    assert len(chunks) >= 2
    optimizer = Optimizer(anonymize_secrets=True, include_metadata=False)
    stored = [optimizer.optimize(c) for c in chunks]
    for chunk in stored:
        assert chunk is not None
        for secret in PLANTED[-2:]:
            assert secret not in chunk.content
        assert "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u" not in chunk.content
    assert optimizer.secrets_redacted == 2


# ---------------------------------------------------------------------------------------------
# The optimizer


def test_the_optimizer_redacts_dedupes_and_adds_the_header() -> None:
    shared = "def helper():\n    return 42\n"
    files = [
        source(SECRETS, "app/settings.py"),
        source(shared, "a/util.py"),
        source(shared, "b/util.py"),  # the same chunk in another file: stored once
    ]
    optimizer = Optimizer(anonymize_secrets=True, include_metadata=True)
    raw: list[Chunk] = []
    stored: list[Chunk] = []
    for file in files:
        for chunk in chunks_of("recursive", file, max_tokens=512):
            raw.append(chunk)
            result = optimizer.optimize(chunk)
            if result is not None:
                stored.append(result)
    assert [c.path for c in raw] == ["app/settings.py", "a/util.py", "b/util.py"]
    assert [c.path for c in stored] == ["app/settings.py", "a/util.py"]
    assert optimizer.duplicates == 1
    assert optimizer.secrets_redacted == 10
    assert optimizer.original_tokens == sum(c.token_count for c in raw)
    assert optimizer.optimized_tokens == sum(c.token_count for c in stored)
    for chunk in stored:
        assert chunk.token_count == estimate_tokens(chunk.content)
        assert chunk.content.startswith(f"File: {chunk.path} | Language: python")
        for secret in PLANTED:
            assert secret not in chunk.content
    helper = stored[-1]
    assert (helper.path, helper.start_line, helper.end_line) == ("a/util.py", 1, 2)
    assert helper.content == "File: a/util.py | Language: python\ndef helper():\n    return 42"


def test_without_options_the_optimizer_only_dedupes() -> None:
    optimizer = Optimizer(anonymize_secrets=False, include_metadata=False)
    chunk = chunks_of("recursive", source(f'KEY = "{AWS_KEY}"\n'))[0]
    assert optimizer.optimize(chunk) == chunk
    assert optimizer.optimize(chunk) is None
    assert (optimizer.duplicates, optimizer.secrets_redacted) == (1, 0)
    assert optimizer.original_tokens == 2 * chunk.token_count
    assert optimizer.optimized_tokens == chunk.token_count


def test_a_secret_in_a_path_stays_out_of_the_header() -> None:
    path = f"keys/{AWS_KEY}.txt"
    chunk = Chunk("owner/repo", path, "text", 1, 1, "hello", None, 1)
    optimizer = Optimizer(anonymize_secrets=True, include_metadata=True)
    stored = optimizer.optimize(chunk)
    assert stored is not None
    assert stored.content == "File: keys/<REDACTED:aws_access_key>.txt | Language: text\nhello"
    assert optimizer.secrets_redacted == 1


def test_the_header_names_the_symbol_and_never_a_secret() -> None:
    assert (
        metadata_header("src/a.py", "python", "Store.put") == "File: src/a.py | Language: python | Symbol: Store.put\n"
    )
    assert metadata_header("evil\nFile: x", "python", None) == "File: evil File: x | Language: python\n"
    chunk = Chunk("owner/repo", "src/a.py", "python", 1, 1, f"{AWS_KEY} = 1", AWS_KEY, 4)
    stored = Optimizer(anonymize_secrets=True, include_metadata=True).optimize(chunk)
    assert stored is not None
    assert AWS_KEY not in stored.content
    assert stored.symbol == "<REDACTED:aws_access_key>"
    assert stored.content == (
        "File: src/a.py | Language: python | Symbol: <REDACTED:aws_access_key>\n<REDACTED:aws_access_key> = 1"
    )


_PEAK_SCRIPT = """
import resource, sys
from kijko_core.ingestion.chunkers import ChunkOptions, chunker_for
from kijko_core.ingestion.files import SourceFile, count_lines
text = {"lines": "x\\n" * 1_000_000, "nested": "x = " + "(" * 2_000_000}[sys.argv[1]]
file = SourceFile("s", "hostile.py", "python", len(text), count_lines(text), text)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert sum(1 for _ in chunker_for("semantic").chunk(file, ChunkOptions(512, 64)))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.parametrize("kind", ["lines", "nested"])
def test_a_hostile_file_within_the_size_cap_keeps_semantic_memory_bounded(kind: str) -> None:
    """2 MB of one-character lines or of nested brackets (within the single-file cap) made
    tree-sitter's tree and its Python nodes grow to 0.5–0.9 GB; past its bounds the semantic
    chunker cuts like recursive (in a fresh process: the peak RSS is the process's)."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, kind], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(done.stdout.strip()) < 250, done.stdout  # MB over the interpreter's start


def test_past_its_bounds_semantic_cuts_exactly_like_recursive() -> None:
    many = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(SEMANTIC_MAX_LINES // 3 + 1))
    file = source(many, "src/many.py")
    assert chunks_of("semantic", file, max_tokens=64) == chunks_of("recursive", file, max_tokens=64)
    few = source("def one():\n    return 1\n\n\ndef two():\n    return 2\n", "src/few.py")
    assert chunks_of("semantic", few, max_tokens=8) != chunks_of("recursive", few, max_tokens=8)
