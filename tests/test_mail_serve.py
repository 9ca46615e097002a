"""On the embedded defaults (no SMTP URL) ``kijko serve`` delivers mail into the local outbox
with its in-process worker and logs one line per mail: without the recipient or the body."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from uuid import UUID

import pytest

from kijko_core import mail
from kijko_core.db.session import system_session
from kijko_core.mail import outbox
from kijko_core.runtime import Kijko
from tests.test_cli import run_kijko
from tests.test_worker_process import _start_serve, worker_env  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

SECRET_LINK = "https://app.kijko.test/invitations/accept?token=very-secret-token-123"


async def test_serve_keeps_mail_in_the_local_outbox_and_says_so_in_one_line(
    kijko: Kijko,
    worker_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in worker_env.items() if k != "KIJKO_REDIS_URL"}
    env.update(KIJKO_SERVE_WORKER="on", KIJKO_WORKER_POLL_SECONDS="0.2")
    process, log = _start_serve(env, tmp_path, "serve-mail")
    try:
        values = {"instance": "kijko.test", "details": [{"label": "link", "value": SECRET_LINK}]}
        async with system_session(kijko.system_db) as db:
            outbox_id = await mail.send(
                db, to="invitee@example.com", template="test_message", values=values, org_id=None
            )
        deadline = time.monotonic() + 30
        while True:
            async with system_session(kijko.system_db, readonly=True) as db:
                row = await outbox.get(db, outbox_id)
            if row is not None and row.state != "queued":
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the mail was not delivered:\n{log.read_text()}")
            await asyncio.sleep(0.2)
        assert row.state == "sent"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()

    output = log.read_text()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    (waiting,) = [line for line in lines if line.get("outbox_id") == str(outbox_id)]
    assert waiting["event"] == "mail waiting in the local outbox"
    assert waiting["hint"] == f"kijko mail show {outbox_id}"
    assert "invitee" not in output and "very-secret-token" not in output

    # The operator reads it with the CLI, link and all.
    data_dir = Path(env["KIJKO_DATA_DIR"])
    assert (data_dir / "mail" / f"{outbox_id}.eml").is_file()
    shown = run_kijko("mail", "show", str(outbox_id), env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "To: invitee@example.com" in shown.stdout and SECRET_LINK in shown.stdout
    assert UUID(shown.stdout.split("Message-ID: <")[1].split("@")[0]) == outbox_id
