"""The ``semantic`` strategy: chunks that follow the code's structure (docs/chunking.md#semantic).

A file is parsed with tree-sitter; its top-level nodes (functions, classes, imports, statements,
comments) are the units the packer moves. A node over the chunk size is opened up into its
children (a class into its methods, a function into its statements), recursively; comments
right above a definition stay with it; small neighbours are packed together up to the size,
while a definition of a quarter of the size or more keeps a chunk of its own. A chunk's
``symbol`` names its definitions (``Store.put`` for a method opened out of its class).

Grammars come compiled inside their wheels (``tree-sitter-python`` …), so nothing is
downloaded at run time; a language without one falls back to the ``recursive`` strategy.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator

from tree_sitter import Language, Node, Parser

from kijko_core.ingestion.chunkers import Chunk, ChunkOptions, Lines, RecursiveChunker, Unit, blocks, pack
from kijko_core.ingestion.files import SourceFile

#: Language name (as the sources detect it) → (module of the grammar wheel, its function).
GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "jsx": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "c++": ("tree_sitter_cpp", "language"),
    "cuda": ("tree_sitter_cpp", "language"),  # C++ with extensions the parser recovers from
    "ruby": ("tree_sitter_ruby", "language"),
    "php": ("tree_sitter_php", "language_php"),
    "csharp": ("tree_sitter_c_sharp", "language"),
    "c#": ("tree_sitter_c_sharp", "language"),
    "bash": ("tree_sitter_bash", "language"),
    "shell": ("tree_sitter_bash", "language"),
    "sh": ("tree_sitter_bash", "language"),
}

#: Node types that define something named, across the grammars above.
DEFINITIONS = frozenset(
    {
        # Python, C, C++, bash
        "function_definition",
        "class_definition",
        # JavaScript, TypeScript, Go, Java, C#, PHP
        "function_declaration",
        "generator_function_declaration",
        "class_declaration",
        "abstract_class_declaration",
        "method_definition",
        "method_declaration",
        "constructor_declaration",
        "interface_declaration",
        "type_alias_declaration",
        "enum_declaration",
        "record_declaration",
        "struct_declaration",
        "namespace_declaration",
        "trait_declaration",
        "internal_module",
        "type_declaration",
        # Rust
        "function_item",
        "impl_item",
        "struct_item",
        "enum_item",
        "union_item",
        "trait_item",
        "mod_item",
        "macro_definition",
        # C, C++
        "struct_specifier",
        "class_specifier",
        "union_specifier",
        "enum_specifier",
        "namespace_definition",
        # Ruby
        "method",
        "singleton_method",
        "class",
        "module",
    }
)
#: Nodes that wrap a definition: decorators, ``export``, templates.
WRAPPERS = frozenset({"decorated_definition", "export_statement", "template_declaration"})
#: ``const f = () => {}``: a variable whose value is one of these is a definition.
FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "class", "generator_function"})
NAME_TYPES = frozenset(
    {
        "identifier",
        "type_identifier",
        "field_identifier",
        "property_identifier",
        "constant",
        "name",
        "qualified_identifier",
        "scoped_identifier",
        "destructor_name",
        "operator_name",
        "namespace_identifier",
        "word",
    }
)
#: How deep an oversized node is opened up before falling back to lines.
MAX_DEPTH = 48
#: Above either, a file is chunked by ``recursive``: a hostile file within the size cap (a
#: million one-character lines, two million nested brackets) makes a parse tree and its Python
#: nodes of ~0.5–0.9 GB; at these bounds one file's peak stays near 50 MB (measured). Real
#: source this large is generated or data, where structure adds little.
SEMANTIC_MAX_LINES = 50_000
SEMANTIC_MAX_TOKENS = 400_000
MAX_NAME = 200


@functools.cache
def grammar(language: str) -> Language | None:
    """The compiled grammar of ``language``, or None when no installed wheel has it."""
    found = GRAMMARS.get(language.lower())
    if found is None:
        return None
    module_name, function = found
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Language(getattr(module, function)())


def _text(node: Node) -> str:
    raw = node.text or b""
    return " ".join(raw.decode("utf-8", "replace").split())[:MAX_NAME]


def _name(node: Node, depth: int = 0) -> str | None:
    """The name a definition node declares (``None`` for an anonymous one)."""
    if depth > 6:
        return None
    for field in ("name", "declarator", "type"):
        child = node.child_by_field_name(field)
        if child is None:
            continue
        if child.type in NAME_TYPES:
            return _text(child)
        found = _name(child, depth + 1)
        if found:
            return found
    for child in node.named_children:
        if child.type in ("type_spec", "type_alias", "variable_declarator", "const_spec"):
            return _name(child, depth + 1)
    return None


def definition(node: Node) -> tuple[bool, str | None]:
    """Whether ``node`` defines something, and its name."""
    if not node.is_named:
        return False, None
    if node.type in WRAPPERS:
        inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
        if inner is None and node.named_children:
            inner = node.named_children[-1]
        return definition(inner) if inner is not None else (False, None)
    if node.type in ("lexical_declaration", "variable_declaration"):
        for child in node.named_children:
            value = child.child_by_field_name("value") if child.type == "variable_declarator" else None
            if value is not None and value.type in FUNCTION_VALUES:
                return True, _name(child)
        return False, None
    if node.type in DEFINITIONS:
        return True, _name(node)
    return False, None


class _Expander:
    def __init__(self, lines: Lines, max_tokens: int) -> None:
        self.lines = lines
        self.max_tokens = max_tokens
        self.groups = 0

    def units(self, node: Node, owner: str | None, depth: int, group: int) -> list[Unit]:
        units: list[Unit] = []
        for child in node.children:
            if child.start_byte == child.end_byte:
                continue  # a node the parser made up to recover from an error
            start = child.start_point.row + 1
            end = child.end_point.row + (
                0 if child.end_point.column == 0 and child.end_point.row > child.start_point.row else 1
            )
            is_definition, name = definition(child)
            symbol = owner
            if is_definition and name and node.type not in WRAPPERS:
                symbol = f"{owner}.{name}" if owner else name
            tokens = self.lines.span_tokens(start, end)
            if tokens > self.max_tokens and end > start and child.child_count and depth < MAX_DEPTH:
                if depth == 0:
                    self.groups += 1  # a top-level node opened up: its pieces stay among themselves
                units.extend(self.units(child, symbol, depth + 1, self.groups if depth == 0 else group))
            else:
                units.append(Unit(start, end, tokens, symbol, is_definition, "comment" in child.type, group=group))
        return attach_comments(merge_shared_lines(self.lines, units))


def merge_shared_lines(lines: Lines, units: list[Unit]) -> list[Unit]:
    """Units that share a line become one (a chunk is made of whole lines)."""
    merged: list[Unit] = []
    for unit in units:  # in the order of the text
        if merged and unit.start <= merged[-1].end:
            last = merged[-1]
            start, end = last.start, max(last.end, unit.end)
            symbol = last.symbol if last.definition or not unit.definition else unit.symbol
            merged[-1] = Unit(
                start,
                end,
                lines.span_tokens(start, end),
                symbol or unit.symbol,
                last.definition or unit.definition,
                last.comment and unit.comment,
                group=max(last.group, unit.group),
            )
        else:
            merged.append(unit)
    return merged


def attach_comments(units: list[Unit]) -> list[Unit]:
    """A comment directly above a definition (no blank line between) joins it."""
    out: list[Unit] = []
    for unit in reversed(units):
        if unit.comment and out and out[-1].definition and out[-1].start == unit.end + 1:
            after = out[-1]
            out[-1] = after._replace(start=unit.start, tokens=after.tokens + unit.tokens)
        else:
            out.append(unit)
    out.reverse()
    return out


def covered(lines: Lines, units: list[Unit]) -> list[Unit]:
    """``units`` plus any non-blank line none of them covers (so nothing is ever lost)."""
    seen = bytearray(len(lines) + 2)
    for unit in units:
        seen[unit.start : unit.end + 1] = b"\1" * (unit.end - unit.start + 1)
    missing = [
        Unit(number, number, lines.tokens[number - 1])
        for number in range(1, len(lines) + 1)
        if not seen[number] and not lines.blank(number)
    ]
    if not missing:
        return units
    return merge_shared_lines(lines, sorted(units + missing, key=lambda u: (u.start, u.end)))


class SemanticChunker:
    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        language = grammar(file.language)
        if language is None:
            yield from RecursiveChunker().chunk(file, options)
            return
        lines = Lines(file.text)
        if len(lines) > SEMANTIC_MAX_LINES or lines.span_tokens(1, len(lines)) > SEMANTIC_MAX_TOKENS:
            yield from pack(file, lines, blocks(lines), options.max_tokens)  # what recursive does
            return
        tree = Parser(language).parse(file.text.encode("utf-8", "surrogatepass"))
        units = _Expander(lines, options.max_tokens).units(tree.root_node, None, 0, 0)
        yield from pack(file, lines, covered(lines, units), options.max_tokens)
