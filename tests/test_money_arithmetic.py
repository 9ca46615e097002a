"""Money is integer cents or Decimal, never float (issue 9 §6): an AST scan of the code that
computes prices, costs and cents fails on ``float(...)``, float literals, ``/`` (true division),
``math.*`` and ``round(...)`` — except where the scan can see the arithmetic is Decimal (an
operand that is ``Decimal(...)``, ``….quantize(...)``, or a name bound to one or annotated
``Decimal``: Decimal refuses to mix with floats, so such an expression is Decimal or an error) —
and except the few lines of :data:`ALLOWED`, each with its reason (measurements that are not
money: shown percentages, GB of storage, seconds until a quota resets). An allowed line that no
longer offends fails too, so the list stays exact."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The code paths that compute money: billing, the price table and reading amounts from data
#: files, the LLM spend cap, what a run costs and where costs become cents (shown, exported,
#: projected).
MONEY_FILES = sorted(
    {
        *(ROOT / "kijko_core" / "billing").rglob("*.py"),
        ROOT / "kijko_core" / "prices.py",
        ROOT / "kijko_core" / "money.py",
        ROOT / "kijko_core" / "executions" / "spend.py",
        ROOT / "kijko_core" / "executions" / "stats.py",
        ROOT / "kijko_core" / "executions" / "export.py",
        ROOT / "kijko_core" / "executions" / "lifecycle.py",
        ROOT / "kijko_core" / "llm" / "skill.py",
        ROOT / "kijko_core" / "llm" / "tracing.py",
    }
)

#: (file, the line's code) → why it is not money arithmetic.
ALLOWED: dict[tuple[str, str], str] = {
    (
        "kijko_core/billing/quotas.py",
        'seconds = max(1, math.ceil(float(row["seconds_left"])))',
    ): "seconds until a quota period resets (Retry-After), not money",
    (
        "kijko_core/billing/quotas.py",
        'return QuotaExceeded("storage", limit // GB, round(current / GB, 3), None, None)',
    ): "storage in GB for the QUOTA_EXCEEDED details (a measurement shown, not money)",
    (
        "kijko_core/billing/quotas.py",
        "if any(alerted < t <= value * 100 / limit for t in THRESHOLDS):",
    ): "a usage percentage compared with the 80/100 % alert thresholds (counts, not money)",
    (
        "kijko_core/billing/quotas.py",
        'return round(value / GB, 3) if metric == "storage" else value',
    ): "as_wire_number: storage in GB for the usage endpoint (the contract's fractional GB)",
    (
        "kijko_core/billing/service.py",
        "percentage = 0.0",
    ): "the usage percentage for display (contract UsageMetric.percentage is a number)",
    (
        "kijko_core/billing/service.py",
        "percentage = 100.0 if value > 0 else 0.0",
    ): "the usage percentage for display",
    (
        "kijko_core/billing/service.py",
        "percentage = min(100.0, round(float(in_unit) * 100 / limit, 1))",
    ): "the usage percentage for display, one decimal",
    (
        "kijko_core/executions/spend.py",
        'return MonthSpend(Decimal(row["spent"]), float(row["seconds_left"]), row["period"])',
    ): "seconds until the month ends (Retry-After of SPEND_CAP_REACHED); the spend itself is Decimal",
    (
        "kijko_core/executions/spend.py",
        "return SpendCapReached(max(1, math.ceil(month.seconds_left)))",
    ): "whole seconds of Retry-After, not money",
    (
        "kijko_core/llm/tracing.py",
        'generation["costDetails"] = {"total": float(cost)}',
    ): "Langfuse's costDetails is a JSON number (telemetry); the exact cost goes in metadata.cost as a string",
    (
        "kijko_core/llm/tracing.py",
        "SEND_TIMEOUT_SECONDS = 10.0",
    ): "an HTTP timeout in seconds for sending traces, not money",
}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    code: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}: {self.code}"


def _is_decimal_annotation(node: ast.expr | None) -> bool:
    return (
        isinstance(node, ast.Name)
        and node.id == "Decimal"
        or isinstance(node, ast.Constant)
        and node.value == "Decimal"
    )


class _Scanner(ast.NodeVisitor):
    """Finds float arithmetic. Decimal-typed names are known per scope (module, function):
    bound only to Decimal expressions, or annotated ``Decimal``."""

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.lines = source.splitlines()
        self.found: list[Violation] = []
        self.scopes: list[set[str]] = [set()]

    # --- what is provably Decimal ----------------------------------------------------------

    def decimal(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "Decimal":
                return True
            if isinstance(func, ast.Attribute) and func.attr in ("quantize", "scaleb", "copy_abs", "copy_negate"):
                return True
        if isinstance(node, ast.Name):
            return any(node.id in scope for scope in self.scopes)
        if isinstance(node, ast.BinOp):
            return self.decimal(node.left) or self.decimal(node.right)
        if isinstance(node, ast.UnaryOp):
            return self.decimal(node.operand)
        return False

    def _bind(self, body: list[ast.stmt], scope: set[str], args: ast.arguments | None = None) -> None:
        if args is not None:
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if _is_decimal_annotation(arg.annotation):
                    scope.add(arg.arg)
        self.scopes.append(scope)
        assigned: dict[str, bool] = {}
        for statement in body:
            for node in ast.walk(statement):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                    continue
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    assigned[node.target.id] = assigned.get(node.target.id, True) and _is_decimal_annotation(
                        node.annotation
                    )
                elif isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            assigned[target.id] = assigned.get(target.id, True) and self.decimal(node.value)
        self.scopes.pop()
        scope.update(name for name, is_decimal in assigned.items() if is_decimal)

    def visit_Module(self, node: ast.Module) -> None:
        scope: set[str] = set()
        self._bind(node.body, scope)
        self.scopes = [scope]
        self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        scope: set[str] = set()
        self._bind(node.body, scope, node.args)
        self.scopes.append(scope)
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    # --- what offends ------------------------------------------------------------------------

    def report(self, node: ast.AST, what: str) -> None:
        lineno = getattr(node, "lineno", 0)
        code = self.lines[lineno - 1].strip() if 0 < lineno <= len(self.lines) else ""
        self.found.append(Violation(self.path, lineno, code, what))

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            if node.func.id == "float":
                self.report(node, "float()")
            elif node.func.id == "round" and not (node.args and self.decimal(node.args[0])):
                self.report(node, "round() of a value not known to be Decimal")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, float):
            self.report(node, "float literal")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Div) and not (self.decimal(node.left) or self.decimal(node.right)):
            self.report(node, "true division (/) of values not known to be Decimal")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.op, ast.Div) and not self.decimal(node.value):
            self.report(node, "true division (/=) of values not known to be Decimal")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            self.report(node, f"math.{node.attr}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module in ("math", "statistics"):
            self.report(node, f"from {node.module} import …")


def scan(source: str, path: str = "<snippet>") -> list[Violation]:
    scanner = _Scanner(path, source)
    scanner.visit(ast.parse(source))
    return scanner.found


def scan_money_files() -> list[Violation]:
    found = []
    for file in MONEY_FILES:
        found += scan(file.read_text(encoding="utf-8"), file.relative_to(ROOT).as_posix())
    return found


def test_the_money_files_exist() -> None:
    missing = [str(file.relative_to(ROOT)) for file in MONEY_FILES if not file.is_file()]
    assert missing == []
    assert (ROOT / "kijko_core" / "billing" / "catalog.py") in MONEY_FILES


def test_money_code_has_no_float_arithmetic_outside_the_allowlist() -> None:
    offending = [str(v) for v in scan_money_files() if (v.path, v.code) not in ALLOWED]
    assert offending == [], "float arithmetic in money code (use integer cents or Decimal):\n" + "\n".join(offending)


def test_every_allowlisted_line_still_offends_and_says_why() -> None:
    seen = {(v.path, v.code) for v in scan_money_files()}
    stale = [f"{path}: {code}" for path, code in ALLOWED if (path, code) not in seen]
    assert stale == [], "allowlisted lines that no longer offend (remove them):\n" + "\n".join(stale)
    assert all(len(reason) > 20 for reason in ALLOWED.values())


# --- the scanner itself catches what it must -----------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "what"),
    [
        ("total = float(cents) * 1.19", "float()"),
        ("total = cents * 1.19", "float literal"),
        ("per_month = annual_cents / 12", "true division (/) of values not known to be Decimal"),
        ("amount /= 12", "true division (/=) of values not known to be Decimal"),
        ("import math\nwhole = math.floor(amount)", "math.floor"),
        ("from math import floor", "from math import …"),
        ("shown = round(cents * 0, 2)", "round() of a value not known to be Decimal"),
        (
            "def f(total: float, n: int) -> float:\n    return total / n",
            "true division (/) of values not known to be Decimal",
        ),
        (
            "def f(x):\n    d = Decimal(1)\n    d = x\n    return d / 3",  # rebound to something unknown
            "true division (/) of values not known to be Decimal",
        ),
    ],
)
def test_the_scanner_catches_a_planted_violation(snippet: str, what: str) -> None:
    assert what in [v.what for v in scan(snippet)]


def test_the_scanner_catches_a_violation_planted_in_a_real_money_file() -> None:
    source = (ROOT / "kijko_core" / "billing" / "models.py").read_text(encoding="utf-8")
    planted = source.replace("monthly // 100", "monthly / 100", 1)
    assert planted != source
    assert [v.what for v in scan(planted)] == ["true division (/) of values not known to be Decimal"]
    assert scan(source) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "MILLION = Decimal(1_000_000)\ndef cost(n: int, p: Decimal) -> Decimal:\n    return n * p / MILLION",
        "share = (Decimal(100 * part) / Decimal(whole)).quantize(Decimal(1))",
        "def f(total: Decimal, n: int) -> Decimal:\n    return total / n",
        "def f(row):\n    window = Decimal(30)\n    return row['cost'] * 7 / window",
        "months = cents // 100\nrest = cents % 100",
        "x = round(Decimal('2.5'))",
    ],
)
def test_decimal_and_integer_arithmetic_passes(snippet: str) -> None:
    assert scan(snippet) == []
