"""Native request/reply over one long-lived reply subscription, with replies handed straight to the
waiting request.

nats-py's ``nc.request`` routes each reply through its dispatcher task and ``asyncio.wait_for``: two
extra scheduling steps and a timer wrapper per request. Here the reply subscription's pending queue
is replaced by a tiny object whose ``put_nowait`` (called by nats-py's reader as the reply is parsed)
resolves the request's future directly. The subscription is an ordinary nats-py one, so it is
re-established on reconnect. If nats-py's internals ever differ, a callback is used instead
(correct, one step slower).

Only a reply resolves a request. The server, too, sends messages to a request's reply subject: the
503 status when nobody subscribes (``NoResponders``), other statuses, and, when a JetStream stream
(anyone's) captures the request's subject, the stream's PubAck (``{"stream": ..., "seq": ...}``)
saying it stored the request. Those are left out (see :func:`from_server`) and the request goes on
waiting for its responder. So is an AMB message on the reply subject whose ``amb-correlation-id``
names another request (anyone may publish to a reply address). Plain replies of non-AMB responders
(``msg.respond(b'{...}')``, no correlation id) count.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

from amb_core.wire import H_CORRELATION_ID

__all__ = ["ConnectionLost", "NoResponders", "ReplyInbox", "from_server"]

log = logging.getLogger("amb.nats")
_STATUS = "Status"
_NO_RESPONDERS = "503"
_ACK_START = (b'{"stream"', b'{"error"')
_ACK_KEYS = frozenset({"stream", "seq", "domain", "duplicate", "error"})
_API_ERROR_KEYS = frozenset({"code", "err_code", "description"})


def from_server(msg: Any) -> bool:
    """True for a message the server (not a responder) sent to a reply subject, other than the
    no-responders status (which :meth:`ReplyInbox.request` reports):

    - a status message: a ``Status`` header and no body (408, 404, 409, 100 ...);
    - a JetStream PubAck without headers: a JSON object of the keys ``stream`` (a string) and
      ``seq`` (an integer), and at most ``domain`` and ``duplicate`` besides; or its error form,
      ``{"error": {"code": ..., "err_code": ..., "description": ...}}`` (``stream``/``seq`` too).

    A responder that must answer with exactly such a body adds any header (AMB's replies always
    carry ``amb-id``), and is then read as a reply.
    """
    headers = msg.headers
    data = msg.data
    if headers:
        status = headers.get(_STATUS)
        return status is not None and status != _NO_RESPONDERS and not data
    if not data.startswith(_ACK_START):
        return False
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    if not isinstance(doc, dict) or not doc.keys() <= _ACK_KEYS:
        return False
    error = doc.get("error")
    if error is not None:
        return isinstance(error, dict) and {"code", "err_code"} <= error.keys() <= _API_ERROR_KEYS
    return isinstance(doc.get("stream"), str) and type(doc.get("seq")) is int


Waiting = tuple["asyncio.Future[Any]", str]
"""A request's future and the correlation id its reply carries, if it carries one."""


def _resolve(waiting: Waiting | None, msg: Any) -> None:
    if waiting is None:
        return
    future, correlation_id = waiting
    if future.done():
        return
    if from_server(msg):
        log.debug(
            "a server message on reply subject %s is not the reply: %r", msg.subject, msg.data
        )
        return
    headers = msg.headers
    if headers and headers.get(H_CORRELATION_ID, correlation_id) != correlation_id:
        log.debug("a message for another request on reply subject %s was dropped", msg.subject)
        return
    future.set_result(msg)


class NoResponders(Exception):
    """The server answered the request with status 503: nobody subscribes to the subject."""


class ConnectionLost(Exception):
    """The connection dropped while the request waited; its reply, if any, is lost with it."""


class _Dispatch:
    """Duck-types the ``asyncio.Queue`` nats-py puts a subscription's messages into."""

    def __init__(self, sub: Any, waiting: dict[str, Waiting], skip: int) -> None:
        self._sub = sub
        self._waiting = waiting
        self._skip = skip

    def put_nowait(self, msg: Any) -> None:
        self._sub._pending_size -= len(msg.data)  # nats-py counted it as pending; it is not
        _resolve(self._waiting.get(msg.subject[self._skip :]), msg)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        pass


class ReplyInbox:
    """``_INBOX.<nuid>.*``: one subscription serving every request of a connection."""

    def __init__(self, nc: Any) -> None:
        self._nc = nc
        self.prefix = f"{nc.new_inbox()}."
        self._waiting: dict[str, Waiting] = {}
        self._tokens = itertools.count()
        self._sub: Any = None

    async def start(self) -> None:
        nc = self._nc
        sub = await nc.subscribe(f"{self.prefix}*")
        if hasattr(sub, "_pending_queue") and hasattr(sub, "_pending_size"):
            sub._pending_queue = _Dispatch(sub, self._waiting, len(self.prefix))
        else:  # pragma: no cover - another nats-py layout
            await sub.unsubscribe()
            sub = await nc.subscribe(f"{self.prefix}*", cb=self._on_reply)
        self._sub = sub
        await nc.flush(timeout=5)

    async def _on_reply(self, msg: Any) -> None:  # pragma: no cover - fallback path
        _resolve(self._waiting.get(msg.subject[len(self.prefix) :]), msg)

    def fail_all(self) -> None:
        """Fail every waiting request at once (called when the connection drops): core NATS does
        not keep a reply for a disconnected client, so waiting out the timeout would be useless."""
        for future, _ in list(self._waiting.values()):
            if not future.done():
                future.set_exception(ConnectionLost())

    async def request(
        self,
        subject: str,
        body: bytes,
        headers: dict[str, str] | str,
        timeout: float,
        correlation_id: str,
    ) -> Any:
        """The reply message.

        ``headers`` is a dict, or header lines already written (``amb_nats._wire``);
        ``correlation_id`` is what an AMB reply to this request carries (``amb-correlation-id``).

        :raises asyncio.TimeoutError: after ``timeout`` seconds.
        :raises NoResponders: when the server reports that nobody listens.
        :raises ConnectionLost: when the connection drops while it waits.
        """
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        waiting = self._waiting
        waiting[token] = (future, correlation_id)
        try:
            if isinstance(headers, str):
                await self._nc.publish_lines(subject, body, headers, self.prefix + token)
            else:
                await self._nc.publish(subject, body, reply=self.prefix + token, headers=headers)
            timer = loop.call_later(timeout, _expire, future)
            try:
                reply = await future
            finally:
                timer.cancel()
        finally:
            waiting.pop(token, None)
        if not reply.data and reply.headers and reply.headers.get(_STATUS) == _NO_RESPONDERS:
            raise NoResponders
        return reply


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())
