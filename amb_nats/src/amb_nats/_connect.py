"""Opening a nats-py connection for the transport: bounded, ended early by a definite refusal, and
wired to the transport's view of the connection (its state, waiting publishes, pending requests).

nats-py's ``connect()`` would retry a refusing server until its own timeout; here the first
authentication refusal, or every server refusing (or failing TLS) once, ends it at once. After the
connection is made, nats-py reconnects by itself forever; its callbacks tell the transport.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Protocol
from urllib.parse import urlsplit

from amb_core.aio import cancel_and_wait, discard_later

from ._client import make_client
from .config import NATSConfig
from .errors import NATSAuthenticationError, NATSConnectError, is_auth_error

__all__ = ["Owner", "open_client"]

log = logging.getLogger("amb.nats")


class Owner(Protocol):
    """What :func:`open_client` reports to: the transport. Each call names the client it is
    about, so that news of a client the transport no longer holds is ignored."""

    def current_client(self) -> Any:
        """The client the transport holds (None while connecting or once closed)."""

    def on_disconnected(self, nc: Any) -> None:
        """nats-py lost the connection and reconnects."""

    def on_reconnected(self, nc: Any) -> None:
        """nats-py is connected again (its subscriptions re-made)."""

    def on_closed(self, nc: Any) -> None:
        """nats-py closed the client (asked to, or giving up)."""


async def open_client(
    cfg: NATSConfig, description: str, owner: Owner, tls: ssl.SSLContext | None
) -> Any:
    """A connected nats-py client.

    :raises NATSAuthenticationError: at the first refusal of the credentials.
    :raises NATSConnectError: once every server refused, or after ``connect_timeout``.
    """
    nc = make_client()
    loop = asyncio.get_running_loop()
    verdict: asyncio.Future[BaseException] = loop.create_future()
    refusals: list[BaseException] = []

    async def error_cb(exc: Exception) -> None:
        current = owner.current_client()
        if current is nc:
            log.warning("NATS connection error on %s: %s", description, type(exc).__name__)
            return
        if current is not None or verdict.done():
            return  # a later failure of a connection the transport has since let go
        if is_auth_error(exc):
            verdict.set_result(exc)
        elif isinstance(exc, OSError):
            refusals.append(exc)
            if len(refusals) >= len(cfg.servers):
                verdict.set_result(exc)

    async def disconnected_cb() -> None:
        owner.on_disconnected(nc)

    async def reconnected_cb() -> None:
        owner.on_reconnected(nc)

    async def closed_cb() -> None:
        owner.on_closed(nc)

    options: dict[str, Any] = {
        "servers": list(cfg.servers),
        "connect_timeout": min(2.0, cfg.connect_timeout),
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        # The bus checks every topic against AMB's grammar, which is stricter than NATS's.
        "skip_subject_validation": True,
        "error_cb": error_cb,
        "disconnected_cb": disconnected_cb,
        "reconnected_cb": reconnected_cb,
        "closed_cb": closed_cb,
    }
    for key in ("name", "token", "user", "password"):
        value = getattr(cfg, key)
        if value is not None:
            options[key] = value
    if tls is not None:
        options["tls"] = tls
    task: asyncio.Future[Any] = asyncio.ensure_future(nc.connect(**options))
    try:
        done, _ = await asyncio.wait(
            {task, verdict}, timeout=cfg.connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
    except BaseException:  # the caller is cancelled: let the half-made connection go, unawaited
        task.cancel()
        discard_later(
            nc.close(), "closing a NATS connection whose connect() was cancelled", log=log
        )
        raise
    if task in done and task.exception() is None:
        return nc
    await cancel_and_wait(task, "nats-py's connect()", log=log)
    try:
        await nc.close()
    except Exception as exc:  # a client that never connected has little to close
        log.debug("closing the failed NATS connection: %r", exc)
    error = verdict.result() if verdict.done() else (refusals[-1] if refusals else None)
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
    if error is not None and is_auth_error(error):
        raise NATSAuthenticationError(f"{description}: the server refused the credentials")
    raise NATSConnectError(f"{description}: {_why(error, cfg)}")


def _why(error: BaseException | None, cfg: NATSConfig) -> str:
    """What went wrong, in words a user can act on; names hosts and ports, never credentials."""
    where = ", ".join(_address(server) for server in cfg.servers)
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused at {where}; is the NATS server running there?"
    if isinstance(error, OSError):
        reason = error.strerror or type(error).__name__
        return f"cannot reach {where}: {reason}"
    if error is None or isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer from {where} within {cfg.connect_timeout:g}s"
    return f"cannot connect to {where}: {type(error).__name__}"


def _address(server: str) -> str:
    """``host:port`` of a server URL (credentials and scheme left out; 4222 when none is given)."""
    parts = urlsplit(server)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 4222}"
