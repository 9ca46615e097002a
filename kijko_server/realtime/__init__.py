"""Realtime over Socket.IO (ARCHITECTURE §5, docs/realtime.md).

``with_realtime(app)`` is the ASGI application ``kijko serve`` runs: Socket.IO at
``/api/v1/socket.io`` in front of the Quart app. ``worker_port(settings)`` is the events port
of a ``kijko worker`` process (a write-only Redis manager). kijko_core never imports this
package: it publishes through ``kijko_core.events``, and this package installs the transport.
"""

from kijko_server.realtime.server import SOCKETIO_PATH, Realtime, create_asgi_app, with_realtime
from kijko_server.realtime.transport import SocketIOEvents, worker_port

__all__ = ["SOCKETIO_PATH", "Realtime", "SocketIOEvents", "create_asgi_app", "with_realtime", "worker_port"]
