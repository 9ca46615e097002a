"""A deterministic source repository for the ingestion bench: ``files`` files of ``total_bytes``
in nine languages, as a git repository ready to be served by ``git http-backend``.

    python -m bench.repo_gen DIR [--files 10000] [--bytes 100000000] [--seed 7]

Same seed, same arguments → the same bytes (and the same commit id: author, committer and
dates are fixed). The files are made of function/class-sized blocks with generated identifiers
(so no two chunks are alike), file sizes log-normally spread (a few large files, many small)
and scaled to the total. Writing 100 MB and committing it takes about a minute; ``ensure``
reuses a finished directory.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

# extension → (language name as Kijko reports it, share of the files)
LANGUAGES: dict[str, tuple[str, float]] = {
    ".py": ("python", 0.22),
    ".ts": ("typescript", 0.18),
    ".js": ("javascript", 0.10),
    ".go": ("go", 0.12),
    ".rs": ("rust", 0.08),
    ".java": ("java", 0.10),
    ".c": ("c", 0.06),
    ".md": ("markdown", 0.09),
    ".yaml": ("yaml", 0.05),
}
_GIT_ENV = {
    "PATH": "/usr/bin:/bin:/usr/local/bin",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def _words(rng: random.Random, count: int) -> list[str]:
    syllables = ["ka", "ri", "to", "men", "sol", "va", "dex", "lo", "pra", "qui", "zen", "bar", "tor", "ul", "ix"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(count)]


class _Blocks:
    """Function/class-sized blocks of each language, from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = _words(rng, 4000)

    def name(self) -> str:
        return self.rng.choice(self.words)

    def camel(self) -> str:
        return self.name() + self.name().capitalize()

    def sentence(self) -> str:
        return " ".join(self.rng.choice(self.words) for _ in range(self.rng.randint(5, 12)))

    def body_lines(self, indent: str, assign: Callable[[str, str], str]) -> list[str]:
        return [
            indent + assign(self.name(), f"{self.name()}({self.name()}, {self.rng.randint(0, 9999)})")
            for _ in range(self.rng.randint(3, 12))
        ]

    def python(self) -> str:
        fn, arg = f"{self.name()}_{self.name()}", self.name()
        lines = [
            f"def {fn}({arg}: int, {self.name()}: str = {self.sentence()!r}) -> int:",
            f'    """{self.sentence().capitalize()}."""',
        ]
        lines += self.body_lines("    ", lambda a, b: f"{a} = {b}")
        lines += [
            f"    if {arg} > {self.rng.randint(1, 500)}:",
            f"        return {arg}",
            f"    return {self.name()}",
            "",
            "",
        ]
        return "\n".join(lines)

    def typescript(self) -> str:
        lines = [
            f"/** {self.sentence()} */",
            f"export function {self.camel()}({self.name()}: number, {self.name()}: string): number {{",
        ]
        lines += self.body_lines("  ", lambda a, b: f"const {a} = {b};")
        lines += [f"  return {self.name()}.length + {self.rng.randint(0, 99)};", "}", "", ""]
        return "\n".join(lines)

    def javascript(self) -> str:
        lines = [f"// {self.sentence()}", f"function {self.camel()}({self.name()}, {self.name()}) {{"]
        lines += self.body_lines("  ", lambda a, b: f"let {a} = {b};")
        lines += [f"  return {self.name()};", "}", f"module.exports.{self.name()} = {self.name()};", "", ""]
        return "\n".join(lines)

    def go(self) -> str:
        lines = [
            f"// {self.camel().capitalize()} {self.sentence()}.",
            f"func {self.camel().capitalize()}({self.name()} int, {self.name()} string) (int, error) {{",
        ]
        lines += self.body_lines("\t", lambda a, b: f"{a} := {b}")
        lines += [f"\treturn {self.name()}, nil", "}", "", ""]
        return "\n".join(lines)

    def rust(self) -> str:
        lines = [
            f"/// {self.sentence()}",
            f"pub fn {self.name()}_{self.name()}({self.name()}: u64, {self.name()}: &str) -> Result<u64, Error> {{",
        ]
        lines += self.body_lines("    ", lambda a, b: f"let {a} = {b};")
        lines += [f"    Ok({self.name()})", "}", "", ""]
        return "\n".join(lines)

    def java(self) -> str:
        lines = [
            f"    /** {self.sentence()} */",
            f"    public static int {self.camel()}(int {self.name()}, String {self.name()}) {{",
        ]
        lines += self.body_lines("        ", lambda a, b: f"int {a} = {b};")
        lines += [f"        return {self.name()};", "    }", "", ""]
        return "\n".join(lines)

    def c(self) -> str:
        lines = [
            f"/* {self.sentence()} */",
            f"static int {self.name()}_{self.name()}(int {self.name()}, const char *{self.name()})",
            "{",
        ]
        lines += self.body_lines("    ", lambda a, b: f"int {a} = {b};")
        lines += [f"    return {self.name()};", "}", "", ""]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [
            f"## {self.sentence().capitalize()}",
            "",
            self.sentence().capitalize() + ". " + self.sentence() + ".",
            "",
            "```sh",
            f"{self.name()} --{self.name()} {self.rng.randint(1, 99)}",
            "```",
            "",
        ]
        lines += [f"- {self.sentence()}" for _ in range(self.rng.randint(2, 6))]
        return "\n".join(lines) + "\n\n"

    def yaml(self) -> str:
        lines = [f"{self.name()}:"]
        lines += [
            f"  {self.name()}_{self.name()}: {self.rng.choice([str(self.rng.randint(0, 9999)), self.sentence()])}"
            for _ in range(self.rng.randint(4, 14))
        ]
        return "\n".join(lines) + "\n"

    def header(self, language: str) -> str:
        if language == "java":
            return f"package {self.name()}.{self.name()};\n\npublic final class {self.camel().capitalize()} {{\n"
        if language == "go":
            return f'package {self.name()}\n\nimport "errors"\n\n'
        if language == "rust":
            return "use std::io::Error;\n\n"
        if language == "c":
            return "#include <stdio.h>\n#include <string.h>\n\n"
        return ""

    def footer(self, language: str) -> str:
        return "}\n" if language == "java" else ""


def generate(root: Path, *, files: int, total_bytes: int, seed: int) -> int:
    """Write the work tree under ``root``; returns the bytes written."""
    rng = random.Random(seed)
    blocks = _Blocks(rng)
    extensions = list(LANGUAGES)
    weights = [share for _, share in LANGUAGES.values()]
    raw = [rng.lognormvariate(0.0, 1.0) for _ in range(files)]
    scale = total_bytes / sum(raw)
    written = 0
    for n, weight in enumerate(raw):
        extension = rng.choices(extensions, weights)[0]
        language = LANGUAGES[extension][0]
        directory = root / "src" / f"pkg_{n // 100:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        size = max(200, min(int(weight * scale), 1_500_000))
        make = getattr(blocks, language)
        parts = [blocks.header(language)]
        length = len(parts[0])
        footer = blocks.footer(language)
        while length + len(footer) < size:
            part = make()
            parts.append(part)
            length += len(part)
        parts.append(footer)
        data = "".join(parts).encode()
        (directory / f"{blocks.name()}_{n:05d}{extension}").write_bytes(data)
        written += len(data)
    (root / "README.md").write_text(f"# Generated repository\n\nseed {seed}, {files} files\n")
    return written


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**_GIT_ENV, "HOME": str(cwd)}, check=True, capture_output=True, text=True
    )
    return done.stdout


def ensure(directory: Path, *, files: int = 10_000, total_bytes: int = 100_000_000, seed: int = 7) -> Path:
    """``directory/<key>/`` with ``work/`` (the checkout) and ``git/bench/generated.git`` (bare,
    packed, ready for ``git http-backend``); generated once per (files, bytes, seed)."""
    home = directory / f"repo-{files}-{total_bytes}-{seed}"
    if (home / "complete").is_file():
        return home
    shutil.rmtree(home, ignore_errors=True)
    work = home / "work"
    work.mkdir(parents=True)
    generate(work, files=files, total_bytes=total_bytes, seed=seed)
    _git("init", "-q", "-b", "main", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "generated", cwd=work)
    bare = home / "git" / "bench" / "generated.git"
    bare.parent.mkdir(parents=True)
    _git("clone", "-q", "--bare", "--no-local", str(work), str(bare), cwd=home)
    _git("repack", "-a", "-d", "-q", cwd=bare)  # one pack: clones reuse it instead of compressing again
    _git("update-server-info", cwd=bare)
    (home / "complete").write_text(_git("rev-parse", "HEAD", cwd=work))
    return home


def tree_stats(work: Path) -> tuple[int, int]:
    """(files, bytes) of the checkout, .git excluded."""
    count = size = 0
    for directory, subdirectories, names in os.walk(work):
        subdirectories[:] = [d for d in subdirectories if d != ".git"]
        for name in names:
            count += 1
            size += os.stat(os.path.join(directory, name)).st_size
    return count, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--bytes", type=int, default=100_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    home = ensure(args.directory, files=args.files, total_bytes=args.bytes, seed=args.seed)
    files, size = tree_stats(home / "work")
    print(f"{home}: {files} files, {size / 1e6:.1f} MB, commit {(home / 'complete').read_text().strip()}")


if __name__ == "__main__":
    main()
