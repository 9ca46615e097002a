"""The benchmarks' helper processes (workers, scheduler ticks): each started with its output in a
log file, waited for until its log says it is ready, stopped with SIGTERM (killed after a
minute)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: A started process and its log.
Started = tuple[subprocess.Popen[bytes], Path]


def start(command: Sequence[str], env: dict[str, str], log: Path) -> Started:
    """``command`` in the repository's root, its stdout and stderr in ``log``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return process, log


def wait_ready(started: Sequence[Started], marker: str, what: str, timeout: float) -> None:
    """Until every log holds ``marker``; a process that ends or is not ready within ``timeout``
    seconds ends the benchmark with the tail of its log."""
    deadline = time.monotonic() + timeout
    for process, log in started:
        while marker not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)


def stop(started: Sequence[Started], report: Callable[[str], None] | None = None) -> None:
    """SIGTERM to all, then wait for each (killed after a minute); ``report`` reads each log
    before it is deleted; a non-zero exit is printed with the log's tail."""
    for process, _ in started:
        process.send_signal(signal.SIGTERM)
    for process, log in started:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if report is not None:
            report(log.read_text())
        if process.returncode != 0:
            print(f"warning: a worker exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        log.unlink(missing_ok=True)
