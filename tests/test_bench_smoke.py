"""The benches are scripts (docs/performance.md), kept out of the test run; these check cheaply
that their parts still work: the generated repository is deterministic, the reference's cutter
keeps every line, the fan-out bench runs end to end with a few clients on the bare server, and
the quota bench runs end to end under uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import repo_gen
from bench.ingestion import _cut
from tests.node_clients import require_node

ROOT = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


def test_generated_repository_is_deterministic_and_mixed(tmp_path: Path) -> None:
    first = repo_gen.generate(tmp_path / "a", files=60, total_bytes=300_000, seed=3)
    second = repo_gen.generate(tmp_path / "b", files=60, total_bytes=300_000, seed=3)
    other = repo_gen.generate(tmp_path / "c", files=60, total_bytes=300_000, seed=4)
    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert a == b and first == second
    assert a != c and other > 0
    assert len(a) == 61  # the files and a README
    assert 300_000 <= first <= 400_000  # whole blocks: a little over the target
    extensions = {Path(name).suffix for name in a}
    assert len(extensions & set(repo_gen.LANGUAGES)) >= 5


def test_ensure_builds_a_cloneable_repository(tmp_path: Path) -> None:
    home = repo_gen.ensure(tmp_path, files=20, total_bytes=40_000, seed=1)
    assert repo_gen.tree_stats(home / "work") == (21, sum(len(v) for v in _tree(home / "work").values()))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(home / "git" / "bench" / "generated.git"), str(clone)], check=True)
    assert _tree(clone) == _tree(home / "work")
    assert repo_gen.ensure(tmp_path, files=20, total_bytes=40_000, seed=1) == home  # reused


def test_reference_cutter_keeps_every_line_within_the_size() -> None:
    text = "".join(f"line {n} " + "x" * (n % 50) + "\n" for n in range(1, 400)) + "last line without newline"
    chunks = _cut(text, 300)
    assert "".join(content for _, _, content in chunks) == text
    assert chunks[0][0] == 1 and chunks[-1][1] == 400
    assert all(b[0] == a[1] + 1 for a, b in zip(chunks, chunks[1:], strict=False))
    assert all(len(content) <= 300 for _, _, content in chunks)
    assert _cut("y" * 1000 + "\nshort\n", 300) == [(1, 1, "y" * 1000 + "\n"), (2, 2, "short\n")]


@pytest.mark.slow
def test_fanout_bench_runs_on_the_bare_server() -> None:
    require_node()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_BENCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.socketio_fanout", "--servers", "bare", "--setups", "one",
         "--clients", "20", "--client-processes", "2", "--rate", "20", "--duration", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line.split() for line in done.stdout.splitlines() if line.startswith("one "))
    # setup server connect emit p50 p99 max expected lost dupes drops cpu rss
    assert row[1] == "bare"
    assert row[7:11] == ["400", "0", "0", "0"], done.stdout


@pytest.mark.slow
def test_quota_bench_runs_under_uvicorn() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_BENCH_")}
    if os.environ.get("KIJKO_TEST_DATABASE_URL"):  # else the bench starts an embedded PostgreSQL
        env["KIJKO_BENCH_DATABASE_URL"] = os.environ["KIJKO_TEST_DATABASE_URL"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.quotas", "--duration", "1", "--rounds", "1", "--orgs", "2",
         "--connections", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "uvicorn (httptools, uvloop) in its own process" in done.stdout, done.stdout
    # variant (two words) route req/s p50 p99 errors: both routes measured in both variants
    rows = {
        (" ".join(words[:2]), words[2]): words[3:]
        for words in (line.split() for line in done.stdout.splitlines())
        if len(words) == 7 and words[2] in ("plain", "counted")
    }
    assert set(rows) == {(v, r) for v in ("one org", "2 orgs") for r in ("plain", "counted")}, done.stdout
    assert all(float(row[0]) > 0 and row[3] == "0" for row in rows.values()), done.stdout
    assert "counted/plain" in done.stdout
    # the counted route counted, in both organizations (the spread variant reached each)
    counted = next(line for line in done.stdout.splitlines() if line.startswith("API calls counted:"))
    assert counted.endswith(" in 2 organization(s)") and int(counted.split()[3]) > 0, counted
