"""The Socket.IO server: handshake, rooms, token lifecycle and access re-checks (docs/realtime.md).

``Realtime(app)`` builds a python-socketio ``AsyncServer`` (``async_mode='asgi'``) for the Quart
app and ``realtime.asgi`` is the one ASGI application: Socket.IO at ``/api/v1/socket.io``, every
other request (and the lifespan) to Quart. The Quart app itself is unchanged, so its test client
works as before; ``kijko serve`` runs ``realtime.asgi``.

A connection is accepted like an HTTP request is: the access token of ``auth.token`` goes through
the runtime's verifier (the same per-token cache) and a tenant session (``kijko.enter``: live
session, membership), and ``query.projectId`` through the projects' read rule (the ingestion service's
``current_progress``, which also gives the snapshot). It then
joins ``user:<id>``, ``org:<id>`` and, with a project, ``ingestion:<projectId>``. Until its
token expires it is watched: ``token_refresh_required`` ahead of expiry, ``reauth`` to renew,
a ``disconnect_reason`` then a disconnect at expiry, and a periodic batched re-check
(:mod:`kijko_server.realtime.access`) that closes connections whose session ended or whose
project became unreadable (decisions 0089–0091).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs
from uuid import UUID

import socketio

from kijko_core import events
from kijko_core.auth.principal import TokenIdentity
from kijko_core.config import Settings, load_settings
from kijko_core.db.session import TenantSession, tenant_session
from kijko_core.errors import Forbidden, InvalidToken, NotFound
from kijko_core.ingestion.reporter import room as ingestion_room
from kijko_core.ingestion.service import SOCKET_PATH, current_progress
from kijko_core.logging import get_logger
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from kijko_server.realtime import access
from kijko_server.realtime.transport import NAMESPACE, SocketIOEvents, client_manager, close_manager

log = get_logger("kijko.realtime")

#: Where Socket.IO is served (ARCHITECTURE §5); clients pass it as their ``path`` option. One
#: definition, the ingestion service's, which also puts it in ``wsNamespaceUrl``.
SOCKETIO_PATH: Final = SOCKET_PATH


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str

    def payload(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


#: The contract's handshake refusals (§4.1), also the codes of ``disconnect_reason``.
NO_TOKEN = Refusal("NO_TOKEN", "Authentication token is required")
NO_PROJECT_ID = Refusal("NO_PROJECT_ID", "Project ID is required")
INVALID_TOKEN = Refusal("INVALID_TOKEN", "Invalid or expired token")
ACCESS_DENIED = Refusal("ACCESS_DENIED", "You do not have access to this project")
NOT_A_MEMBER = Refusal("ACCESS_DENIED", "You are not a member of this organization")
#: Beyond the contract: the user already holds KIJKO_REALTIME_MAX_CONNECTIONS_PER_USER
#: connections to this process (decision 0097).
TOO_MANY_CONNECTIONS = Refusal("TOO_MANY_CONNECTIONS", "Too many connections for this user; close some and retry")
#: The answer to a ``reauth`` sent while the connection's previous one is still being checked.
REAUTH_IN_PROGRESS = Refusal("REAUTH_IN_PROGRESS", "A reauth of this connection is already being checked")

TOKEN_EXPIRING = "Token expiring soon"


class Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.code)
        self.refusal = refusal


@dataclass
class Connection:
    """One accepted Socket.IO connection of this process."""

    sid: str
    identity: TokenIdentity
    project_id: UUID | None
    address: str | None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    #: A ``reauth`` is being checked (one at a time: each costs a database session).
    reauthing: bool = False

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def grant(self) -> access.Grant:
        i = self.identity
        return access.Grant(i.user_id, i.org_id, i.session_id, self.project_id)


def _origins(settings: Settings) -> str | list[str]:
    origins = list(settings.cors_origins)
    return "*" if "*" in origins else origins


class Realtime:
    """The Socket.IO side of one API process."""

    def __init__(self, app: KijkoApp, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or app.kijko.settings
        self.manager = client_manager(self.settings)
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=self.manager,
            cors_allowed_origins=_origins(self.settings),
            ping_interval=self.settings.realtime_ping_interval_seconds,
            ping_timeout=self.settings.realtime_ping_timeout_seconds,
            logger=False,
            engineio_logger=False,
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("reauth", self._on_reauth)
        self.connections: dict[str, Connection] = {}
        #: Per user: accepted connections plus handshakes past the token check (the cap).
        self._held: dict[UUID, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rechecker: asyncio.Task[None] | None = None
        self._previous_port: events.EventPort | None = None
        #: Duration of the last re-check and how many connections it covered (logged, measured).
        self.last_recheck: tuple[int, float] | None = None
        self.asgi = socketio.ASGIApp(self.sio, other_asgi_app=app, socketio_path=SOCKETIO_PATH)
        app.before_serving(self.start)
        app.after_serving(self.stop)

    @property
    def kijko(self) -> Kijko:
        return self.app.kijko

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Install the Socket.IO events port and start the re-check loop (Quart's start-up)."""
        if not self.sio.manager_initialized:
            # Subscribe to the shared channel now, not at the first connection.
            self.sio.manager_initialized = True
            self.sio.manager.initialize()
        self._previous_port = events.use(SocketIOEvents(self.sio.emit))
        self._rechecker = asyncio.create_task(self._recheck_forever(), name="realtime-recheck")
        log.info(
            "realtime_started",
            path=SOCKETIO_PATH,
            manager=type(self.manager).__name__,
            channel=self.settings.realtime_channel if self.settings.redis_url else None,
        )

    async def stop(self) -> None:
        if self._rechecker is not None:
            self._rechecker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rechecker
        for connection in self.connections.values():
            connection.cancel_timers()
        for task in list(self._tasks):
            task.cancel()
        if self._previous_port is not None:
            events.use(self._previous_port)
        await self.sio.shutdown()
        await close_manager(self.manager)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- handshake --------------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        raw_project = query.get("projectId", [None])[-1]
        address = _client_address(environ)
        try:
            identity, project_id, snapshot = await self._admit(auth, query, raw_project)
        except Refused as refused:
            log.warning(
                "realtime_refused",
                sid=sid,
                project_id=None if raw_project is None else raw_project[:64],  # the client's text
                reason=refused.refusal.code,
                detail=refused.refusal.message,
                address=address,
            )
            raise socketio.exceptions.ConnectionRefusedError(refused.refusal.code, refused.refusal.payload()) from None
        connection = Connection(sid, identity, project_id, address)
        self.connections[sid] = connection  # (its slot, taken by _admit, is now this connection's)
        # Rooms last, with nothing awaited after them: no event can reach the client before
        # the CONNECT packet that follows this handler.
        await self.sio.enter_room(sid, f"user:{identity.user_id}")
        await self.sio.enter_room(sid, f"org:{identity.org_id}")
        if project_id is not None:
            await self.sio.enter_room(sid, ingestion_room(project_id))
        self._spawn(self._after_connect(connection, snapshot))
        log.info(
            "realtime_connected",
            sid=sid,
            user_id=str(identity.user_id),
            project_id=None if project_id is None else str(project_id),  # parsed: never the client's text
            address=address,
        )
        return True

    async def _admit(
        self, auth: Any, query: dict[str, list[str]], raw_project: str | None
    ) -> tuple[TokenIdentity, UUID | None, dict[str, Any] | None]:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise Refused(NO_TOKEN)
        wants_ingestion = "ingestion" in query.get("channel", []) or (
            isinstance(auth, dict) and auth.get("channel") == "ingestion"
        )
        if (raw_project is not None and not raw_project.strip()) or (raw_project is None and wants_ingestion):
            raise Refused(NO_PROJECT_ID)
        identity = await self._verify(token.strip())
        project_id: UUID | None = None
        if raw_project is not None:
            try:
                project_id = UUID(raw_project.strip())
            except ValueError:
                raise Refused(ACCESS_DENIED) from None  # the same answer as an unknown project
        # The slot is taken before the database is asked (nothing awaited in between), so
        # a burst of handshakes with one valid token cannot hold more sessions than the cap.
        self._take_slot(identity.user_id)
        try:
            snapshot = await self._check(identity, project_id)
        except BaseException:
            self._release_slot(identity.user_id)
            raise
        return identity, project_id, snapshot

    def _take_slot(self, user_id: UUID) -> None:
        held = self._held.get(user_id, 0)
        if held >= self.settings.realtime_max_connections_per_user:
            raise Refused(TOO_MANY_CONNECTIONS)
        self._held[user_id] = held + 1

    def _release_slot(self, user_id: UUID) -> None:
        held = self._held.get(user_id, 0) - 1
        if held > 0:
            self._held[user_id] = held
        else:
            self._held.pop(user_id, None)

    def _forget(self, connection: Connection) -> None:
        """The connection is gone: its timers stop and its user's slot is free again."""
        connection.cancel_timers()
        self._release_slot(connection.identity.user_id)

    async def _verify(self, token: str) -> TokenIdentity:
        try:
            return await self.kijko.identity.verifier.verify(token)
        except InvalidToken:
            raise Refused(INVALID_TOKEN) from None

    async def _check(self, identity: TokenIdentity, project_id: UUID | None) -> dict[str, Any] | None:
        """What an HTTP request with this token would be allowed: the session is live and a
        member (``kijko.enter``), the project readable. Returns the project's progress."""
        try:
            async with tenant_session(self.kijko.app_db, identity, readonly=True) as db:
                if project_id is None:
                    return None
                return await snapshot_of(db, project_id)  # the projects' read rule first
        except InvalidToken:
            raise Refused(INVALID_TOKEN) from None
        except Forbidden:
            raise Refused(NOT_A_MEMBER) from None
        except NotFound:
            raise Refused(ACCESS_DENIED) from None

    async def _after_connect(self, connection: Connection, snapshot: dict[str, Any] | None) -> None:
        """Once the client has its CONNECT packet: the progress snapshot, and the token timers."""
        if not await self._connected(connection.sid):
            # The client went away during the handshake: python-socketio calls no disconnect
            # handler for a connection it never completed.
            if self.connections.get(connection.sid) is connection:
                del self.connections[connection.sid]
                self._forget(connection)
            return
        if snapshot is not None:
            await self.sio.emit("progress_update", snapshot, to=connection.sid, namespace=NAMESPACE)
        self._schedule(connection)

    async def _connected(self, sid: str) -> bool:
        deadline = time.monotonic() + 5.0
        while not self.sio.manager.is_connected(sid, NAMESPACE):
            if sid not in self.connections or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        connection = self.connections.pop(sid, None)
        if connection is not None:
            self._forget(connection)
            log.info("realtime_disconnected", sid=sid, reason=str(reason))

    # --- token lifecycle --------------------------------------------------------------------

    def _schedule(self, connection: Connection) -> None:
        """``token_refresh_required`` ahead of the token's expiry, the disconnect at it."""
        connection.cancel_timers()
        loop = asyncio.get_running_loop()
        left = connection.identity.expires_at.timestamp() - time.time()
        lead = self.settings.realtime_refresh_lead_seconds
        sid, expires = connection.sid, connection.identity.expires_at
        connection.timers.append(loop.call_later(max(0.0, left - lead), lambda: self._spawn(self._warn(sid, expires))))
        connection.timers.append(
            loop.call_later(max(0.0, left), lambda: self._spawn(self._close(sid, INVALID_TOKEN, "token_expired")))
        )

    async def _warn(self, sid: str, expires: datetime) -> None:
        connection = self.connections.get(sid)
        if connection is None or connection.identity.expires_at != expires:
            return  # gone, or renewed meanwhile
        await self.sio.emit(
            "token_refresh_required",
            {"reason": TOKEN_EXPIRING, "expiresAt": _iso(expires)},
            to=sid,
            namespace=NAMESPACE,
        )

    async def _close(self, sid: str, refusal: Refusal, why: str) -> None:
        """``disconnect_reason {code, message}`` then the server-side disconnect."""
        connection = self.connections.pop(sid, None)
        if connection is None:
            return
        self._forget(connection)
        log.info(
            "realtime_closed",
            sid=sid,
            reason=refusal.code,
            why=why,
            user_id=str(connection.identity.user_id),
            project_id=None if connection.project_id is None else str(connection.project_id),
            address=connection.address,
        )
        with contextlib.suppress(Exception):
            await self.sio.emit("disconnect_reason", refusal.payload(), to=sid, namespace=NAMESPACE)
        with contextlib.suppress(Exception):
            await self.sio.disconnect(sid, namespace=NAMESPACE)

    async def _on_reauth(self, sid: str, data: Any = None) -> dict[str, Any] | None:
        """``reauth {token}``: the same user and organization with a fresh token; anything else
        closes the connection."""
        connection = self.connections.get(sid)
        if connection is None:
            return None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            self._spawn(self._close(sid, NO_TOKEN, "reauth_without_token"))
            return {"ok": False, **NO_TOKEN.payload()}
        if connection.reauthing:
            # python-socketio runs each event as its own task: a flood of reauths would
            # otherwise open as many database sessions at once.
            return {"ok": False, **REAUTH_IN_PROGRESS.payload()}
        connection.reauthing = True
        try:
            return await self._reauth(sid, connection, token)
        finally:
            connection.reauthing = False

    async def _reauth(self, sid: str, connection: Connection, token: str) -> dict[str, Any] | None:
        try:
            identity = await self._verify(token.strip())
            current = connection.identity
            if (identity.user_id, identity.org_id) != (current.user_id, current.org_id):
                raise Refused(INVALID_TOKEN)
            await self._check(identity, connection.project_id)
        except Refused as refused:
            self._spawn(self._close(sid, refused.refusal, "reauth_refused"))
            return {"ok": False, **refused.refusal.payload()}
        if self.connections.get(sid) is not connection:
            return None  # closed while we checked
        connection.identity = identity
        self._schedule(connection)
        log.info("realtime_reauth", sid=sid, user_id=str(identity.user_id))
        return {"ok": True, "expiresAt": _iso(identity.expires_at)}

    # --- access re-check --------------------------------------------------------------------

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.realtime_recheck_seconds)
            try:
                await self.recheck()
            except Exception:
                log.warning("realtime_recheck_failed", exc_info=True)

    async def recheck(self) -> None:
        """Close every connection whose session ended or whose project is no longer readable."""
        connections = list(self.connections.values())
        if not connections:
            return
        started = time.perf_counter()
        verdicts = await access.recheck(self.kijko.system_db, [c.grant() for c in connections])
        self.last_recheck = (len(connections), time.perf_counter() - started)
        for connection, verdict in zip(connections, verdicts, strict=True):
            if verdict is access.Verdict.SESSION_ENDED:
                self._spawn(self._close(connection.sid, INVALID_TOKEN, verdict.value))
            elif verdict is access.Verdict.NOT_A_MEMBER:
                self._spawn(self._close(connection.sid, NOT_A_MEMBER, verdict.value))
            elif verdict is access.Verdict.NO_PROJECT_ACCESS:
                self._spawn(self._close(connection.sid, ACCESS_DENIED, verdict.value))


async def snapshot_of(db: TenantSession, project_id: UUID) -> dict[str, Any] | None:
    """The project's ingestion progress as the ``progress_update`` sent on joining (the
    IngestionProgress of ``GET /progress``, absent fields left out), or None when it never
    ran. Raises the project's NotFound when the caller cannot read it."""
    progress = await current_progress(db, project_id)
    if progress is None:
        return None
    dumped: dict[str, Any] = progress.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def _client_address(environ: dict[str, Any]) -> str | None:
    client = environ.get("asgi.scope", {}).get("client")
    return str(client[0]) if client else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def with_realtime(app: KijkoApp, settings: Settings | None = None) -> Any:
    """The ASGI application of ``kijko serve``: Socket.IO in front of ``app`` (``settings``
    needed only when the app starts its own runtime)."""
    return Realtime(app, settings).asgi


def create_asgi_app(settings: Settings | None = None) -> Any:
    """For ASGI servers that import a factory (``uvicorn --factory
    kijko_server.realtime:create_asgi_app``): the app with its own runtime, and Socket.IO."""
    settings = settings or load_settings()
    return with_realtime(create_app(settings), settings)
