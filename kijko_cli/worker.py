"""``kijko worker``: claims and runs background jobs until SIGTERM/SIGINT, then drains.

One asyncio loop on the main thread owns the runtime (pools) and the worker; huey's consumer
runs on two threads and hands it the doorbell's rings and the minute tick (the sweeper).
SIGTERM or SIGINT: stop claiming, stop the consumer, let running jobs finish within
``KIJKO_WORKER_GRACE_SECONDS``, give the rest back (queued again), stop the runtime, exit 0.
A second signal gives the running jobs back at once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import click
import structlog

from kijko_cli.common import EXIT_FAILED, one_line_errors
from kijko_cli.common import settings as load_cli_settings
from kijko_core import events
from kijko_core.config import Settings
from kijko_core.jobs import add_doorbell, known_kinds, remove_doorbell
from kijko_core.jobs.worker import Worker
from kijko_core.logging import configure_logging

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko


def run_worker(settings: Settings, *, concurrency: int | None = None) -> None:
    from kijko_cli.serve import ServeError  # the server's modules: only when the command runs

    configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger("kijko.worker")
    try:
        asyncio.run(_work(settings, concurrency, log))
    except ServeError:
        raise
    except Exception as error:
        log.exception("worker_failed")
        raise ServeError(f"worker failed: {type(error).__name__} (details in the log)", EXIT_FAILED) from None


async def _work(settings: Settings, concurrency: int | None, log: Any) -> None:
    from kijko_cli.serve import start_runtime
    from kijko_server.jobs import HueyJobs
    from kijko_server.realtime import worker_port

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    kijko = await start_runtime(settings)
    previous_port = None
    port = None
    try:
        # With Redis, job events (ingestion progress…) reach the API processes' Socket.IO
        # clients through a write-only manager (docs/realtime.md).
        port = worker_port(settings)
        if port is not None:
            previous_port = events.use(port)
        worker = Worker(kijko, concurrency=concurrency)
        queue = HueyJobs(settings)
        queue.attach(worker, loop)
        add_doorbell(queue)  # jobs that enqueue jobs ring the other workers too
        add_doorbell(worker)  # … and this one at once
        consumer = queue.consumer()
        consumer.start()
        for sig in (signal.SIGINT, signal.SIGTERM):  # huey's consumer installed its own
            loop.add_signal_handler(sig, on_signal)
        log.info(
            "worker_started",
            owner=worker.owner,
            concurrency=worker.concurrency,
            kinds=sorted(known_kinds()),
            queue=type(queue.huey).__name__,
        )
        runner = asyncio.create_task(worker.run(), name="worker")
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        log.info("worker_draining", running=worker.running_count, grace_seconds=settings.worker_grace_seconds)
        worker.stop_claiming()
        stopping = asyncio.create_task(asyncio.to_thread(consumer.stop, graceful=True))
        released = await worker.drain(hurry=hurry)
        waiter.cancel()
        await runner
        await stopping
        remove_doorbell(queue)
        remove_doorbell(worker)
        log.info("worker_stopped", released=released)
    finally:
        if previous_port is not None:
            events.use(previous_port)
            if port is not None:
                await port.aclose()
        await kijko.stop()


@click.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    help="Jobs run at the same time (KIJKO_WORKER_CONCURRENCY, default 8).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe level logged (KIJKO_LOG_LEVEL, default info).",
)
def worker(concurrency: int | None, log_level: str | None) -> None:
    """Run background jobs until SIGTERM/SIGINT, then drain (docs/jobs.md).

    Exit codes: 0 stopped (after draining), 1 failed, 2 configuration, 3 schema behind (run
    `kijko migrate`), 4 database unreachable.
    """
    from kijko_cli.serve import ServeError

    config = load_cli_settings(log_level=log_level)
    with one_line_errors():
        try:
            run_worker(config, concurrency=concurrency)
        except ServeError as error:
            click.echo(f"error: {error.message}", err=True)
            sys.exit(error.exit_code)


def serve_runs_worker(settings: Settings) -> bool:
    """``KIJKO_SERVE_WORKER``: ``auto`` runs the worker inside ``kijko serve`` on the embedded
    database only (the two-command quickstart does everything); ``on``/``off`` force it."""
    return settings.serve_worker == "on" or (settings.serve_worker == "auto" and settings.embedded_database)


#: How often the worker inside ``kijko serve`` runs the sweeper (huey's tick is per minute too).
IN_PROCESS_SWEEP_SECONDS = 60.0


@asynccontextmanager
async def jobs_in_serve(kijko: Kijko) -> AsyncIterator[Worker | None]:
    """The jobs side of ``kijko serve``: a worker in the same loop (drained on the way out),
    or, with separate ``kijko worker`` processes, huey's doorbell for this process's enqueues."""
    log = structlog.get_logger("kijko.serve")
    if serve_runs_worker(kijko.settings):
        worker = Worker(kijko)
        add_doorbell(worker)
        runner = asyncio.create_task(worker.run(sweep_every=IN_PROCESS_SWEEP_SECONDS), name="worker")
        log.info("worker_in_process", concurrency=worker.concurrency, kinds=sorted(worker.kinds))
        try:
            yield worker
        finally:
            remove_doorbell(worker)
            released = await worker.drain()
            await runner
            log.info("worker_stopped", released=released)
        return
    from kijko_server.jobs import HueyJobs

    try:
        queue = HueyJobs(kijko.settings)
    except Exception as error:  # e.g. an unwritable data dir for SQLite: workers still poll
        log.warning("doorbell_unavailable", error=f"{type(error).__name__}: {error}")
        yield None
        return
    add_doorbell(queue)
    try:
        yield None
    finally:
        remove_doorbell(queue)
