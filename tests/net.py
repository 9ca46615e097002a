"""Local network helpers the tests share."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A local port nothing listens on: for a server the test starts, or as an address that
    refuses connections (a service configured but down). Bound and released at once, so it is
    free now, not reserved."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
