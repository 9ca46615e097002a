"""A file's language, and whether a file is binary or generated, from its name and first bytes.

The language comes from ``identify`` (pre-commit's file identification: tags by file name,
extension and ``#!`` interpreter, plain dictionaries, no I/O of its own here). Its tags are
mapped to the lower-case names in :data:`LANGUAGES`; a text file no tag names is ``text``.
docs/ingestion-sources.md#languages has the list.
"""

from __future__ import annotations

import io
import re
from typing import Final

import filetype
from identify import identify

#: identify tag → our language name, in order of preference when a file has several tags
#: (``.h`` is tagged both ``c`` and ``c++``: it is ``c``; ``.mm`` is ``objective-cpp``).
LANGUAGES: Final[dict[str, str]] = {
    "python": "python",
    "pyi": "python",
    "cython": "cython",
    "tsx": "tsx",
    "ts": "typescript",
    "jsx": "javascript",
    "javascript": "javascript",
    "vue": "vue",
    "svelte": "svelte",
    "astro": "astro",
    "java": "java",
    "kotlin": "kotlin",
    "scala": "scala",
    "groovy": "groovy",
    "go": "go",
    "rust": "rust",
    "objective-c++": "objective-cpp",
    "objective-c": "objective-c",
    "cuda": "cuda",
    "c": "c",
    "c++": "cpp",
    "c#": "csharp",
    "f#": "fsharp",
    "vb": "vb",
    "swift": "swift",
    "dart": "dart",
    "ruby": "ruby",
    "php": "php",
    "perl": "perl",
    "lua": "lua",
    "r": "r",
    "julia": "julia",
    "haskell": "haskell",
    "elixir": "elixir",
    "erlang": "erlang",
    "clojure": "clojure",
    "ocaml": "ocaml",
    "elm": "elm",
    "zig": "zig",
    "nim": "nim",
    "crystal": "crystal",
    "solidity": "solidity",
    "gdscript": "gdscript",
    "powershell": "powershell",
    "fish": "fish",
    "shell": "shell",
    "batch": "batch",
    "sql": "sql",
    "graphql": "graphql",
    "proto": "protobuf",
    "thrift": "thrift",
    "terraform": "hcl",
    "hcl": "hcl",
    "dockerfile": "dockerfile",
    "makefile": "makefile",
    "cmake": "cmake",
    "html": "html",
    "xhtml": "html",
    "css": "css",
    "scss": "scss",
    "sass": "sass",
    "less": "less",
    "markdown": "markdown",
    "mdx": "markdown",
    "rst": "rst",
    "asciidoc": "asciidoc",
    "tex": "latex",
    "jupyter": "json",
    "json": "json",
    "json5": "json",
    "yaml": "yaml",
    "toml": "toml",
    "xml": "xml",
    "svg": "xml",
    "ini": "ini",
    "csv": "csv",
    "diff": "diff",
}
TEXT: Final = "text"

#: Bytes of a file's head sniffed for NUL bytes and magic numbers.
HEAD_BYTES: Final = 8192

#: Known binary formats identify does not tag ``binary`` (its list covers images, archives,
#: fonts, office documents, executables, …).
_BINARY_EXTENSIONS: Final = frozenset(
    {
        "a", "bin", "class", "dat", "db", "dll", "dylib", "exe", "lib", "mo", "o", "obj", "pyc",
        "pyd", "pyo", "so", "sqlite", "sqlite3", "wasm", "whl", "npy", "npz", "pkl", "pickle",
        "onnx", "pt", "pth", "h5", "parquet", "avro", "orc", "dmg", "iso", "img", "deb", "rpm",
        "apk", "ipa", "msi", "7z", "xz", "zst", "lz4", "lzma", "br", "rar", "tgz", "tbz2",
        "mp3", "mp4", "mov", "avi", "mkv", "webm", "flac", "ogg", "m4a", "heic", "psd",
    }
)  # fmt: skip

# Go's marker of generated code (https://go.dev/s/generatedcode), used by other tools too.
_GENERATED_MARKER = re.compile(rb"^// Code generated .* DO NOT EDIT\.$", re.MULTILINE)
#: Languages whose files are usually minified when one line is this long.
_MINIFIABLE: Final = frozenset({"javascript", "typescript", "css", "scss", "less", "json", "html", "xml"})
LONG_LINE: Final = 1000


def _tags(name: str) -> set[str]:
    return set(identify.tags_from_filename(name))


def binary_by_name(name: str) -> bool:
    """Whether the file name alone says binary (an image, archive, font, executable …)."""
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    return extension in _BINARY_EXTENSIONS or "binary" in _tags(name)


def _utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # The sample may end inside a character: only a failure before its last 3 bytes counts.
        return error.start >= len(head) - 3 and len(head) == HEAD_BYTES
    return True


def binary_by_head(head: bytes) -> bool:
    """Whether the first bytes say binary: a NUL byte, or bytes that are no UTF-8 and start
    with a magic number ``filetype`` knows (archives, images, media, fonts, executables,
    documents). Other non-UTF-8 text is planned: ``read`` reports it unreadable."""
    if b"\x00" in head:
        return True
    return not _utf8(head) and filetype.guess(head) is not None


def generated_by_head(head: bytes, language: str) -> bool:
    """Generated code that says so (Go's ``// Code generated … DO NOT EDIT.``), or a minified
    bundle: a line of more than :data:`LONG_LINE` characters in the first bytes of a language
    that is minified (JavaScript, CSS, JSON, HTML …)."""
    if _GENERATED_MARKER.search(head):
        return True
    if language in _MINIFIABLE:
        return any(len(line) > LONG_LINE for line in head.split(b"\n"))
    return False


def language_of(name: str, head: bytes) -> str:
    """The language of a file named ``name`` (its last path component) whose first bytes are
    ``head``: by name and extension, else by a ``#!`` interpreter, else ``text``."""
    tags = _tags(name)
    if not tags - {"text"}:
        interpreter = identify.parse_shebang(io.BytesIO(head))
        if interpreter:
            tags = set(identify.tags_from_interpreter(interpreter[0]))
    for tag, language in LANGUAGES.items():
        if tag in tags:
            return language
    return TEXT
