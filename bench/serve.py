"""Run Kijko, the FastAPI peer or the bare reference under uvicorn (httptools, uvloop):
``python -m bench.serve kijko|quotas|peer|bare PORT``.

``quotas`` is Kijko with the quota bench's bench-only counted route (bench/quotas.py), which
only this process registers. All read their database settings from the environment the
benchmark prepares.
"""

from __future__ import annotations

import sys

import uvicorn


def main() -> None:
    which, port = sys.argv[1], int(sys.argv[2])
    if which in ("kijko", "quotas"):
        from kijko_core.config import load_settings
        from kijko_core.logging import configure_logging
        from kijko_server.app import create_app

        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)  # as `kijko serve` does
        if which == "quotas":
            from bench.quotas import counted_app

            app = counted_app(settings)
        else:
            app = create_app(settings)
    elif which == "peer":
        from bench.fastapi_peer import app  # type: ignore[assignment]
    else:
        from bench.bare_app import app  # type: ignore[assignment]
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_config=None,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
