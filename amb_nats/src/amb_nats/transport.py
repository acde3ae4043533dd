"""The NATS transport: one nats-py connection, in core NATS or JetStream mode.

*Core* mode is NATS itself: subjects with native ``*``/``>`` wildcards (AMB's topic grammar *is*
NATS's subject grammar), queue groups as consumer groups, and native request/reply through nats-py's
shared response inbox, which reports "no responders" at once. It is at-most-once and says so.

*JetStream* mode publishes into streams (one per namespace, on AMB's own prefixed subjects, see
:mod:`amb_nats.naming`) and waits for the server's acknowledgement, with the message id as
``Nats-Msg-Id`` so that a retried publish is stored once; subscriptions are pull consumers with
explicit ack (see :mod:`amb_nats.jetstream`). Replies and the bus's inbox (``_INBOX.*`` subjects)
travel over core NATS in both modes: they are ephemeral by nature, and a request sent into a stream
would be answered by JetStream's own ack.

Connection loss after connect is handled by nats-py: it reconnects forever (every half second) and
re-subscribes. The transport follows it in :attr:`state` (``RECONNECTING``, then ``CONNECTED``), and
a publish or request made meanwhile waits up to ``publish_timeout`` for the connection, then raises
:class:`~amb_nats.errors.NATSBrokerUnavailableError` (see :mod:`amb_nats._outage`): nothing is left
in nats-py's reconnect buffer to be flushed later to nobody.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import nats.errors
import nats.js.errors

from amb_core.cancellation import CANCEL_TOPIC
from amb_core.errors import (
    ConfigurationError,
    DecodeError,
    MessageTooLargeError,
    NoRespondersError,
    NotConnectedError,
    RequestTimeoutError,
)
from amb_core.message import Message
from amb_core.transport import (
    Capabilities,
    ConnectionState,
    Subscription,
    SubscriptionSpec,
    Transport,
)
from amb_core.wire import H_TOPIC, decode, encode

from ._client import header_block_size
from ._connect import open_client
from ._inbox import InboxSubscription, request_reply_subject
from ._outage import Outage
from ._requests import ConnectionLost, NoResponders, ReplyInbox
from ._wire import header_text
from .config import NATSConfig, parse_url
from .core import CoreSubscription
from .errors import (
    NATSBrokerUnavailableError,
    NATSConnectError,
    NATSError,
    translate_publish_error,
)
from .jetstream import MSG_ID_HEADER, Streams, open_pull
from .naming import INBOX_PREFIX, namespace_of

__all__ = ["NATSBroker", "NATSTransport"]

log = logging.getLogger("amb.nats")
_DEFAULT_MAX_PAYLOAD = 1024 * 1024
# Why a JetStream publish is tried again (see NATSTransport._js_publish_again), as its error says.
_LEADERLESS = "no stream answered: in a cluster, the stream has no leader"
_LOST = "the connection was lost before the acknowledgement"
_NO_ACK = "no acknowledgement in time"

CORE_CAPABILITIES = Capabilities(
    consumer_groups=True,
    ordered=True,
    native_wildcards=True,
    native_request_reply=True,
    headers=True,
    max_message_size=_DEFAULT_MAX_PAYLOAD,
)
JETSTREAM_CAPABILITIES = Capabilities(
    persistent=True,
    consumer_groups=True,
    at_least_once=True,
    ordered=True,
    native_wildcards=True,
    native_delay=True,
    replay=True,
    headers=True,
    delivery_count=True,
    max_message_size=_DEFAULT_MAX_PAYLOAD,
)


def _is_inbox(subject: str) -> bool:
    return subject.startswith(INBOX_PREFIX) and subject[
        len(INBOX_PREFIX) : len(INBOX_PREFIX) + 1
    ] in (
        ".",
        "",
    )


def _reply_subject(message: Message) -> str:
    """The NATS reply subject of a publish: for a request through the bus's inbox, one that
    makes the server say at once if nobody listens (see :mod:`amb_nats._inbox`); else none."""
    reply_to = message.reply_to
    if (
        reply_to is not None
        and message.correlation_id
        and _is_inbox(reply_to)
        and not _is_inbox(message.topic)
    ):
        return request_reply_subject(reply_to, message.correlation_id)
    return ""


class NATSTransport(Transport):
    """AMB over NATS. ``mode="core"`` (default) or ``mode="jetstream"``.

    :param url: ``nats://[user:pass@|token@]host[:port][,host2...][?mode=jetstream&...]`` (see
        :meth:`from_url`), or an already parsed :class:`~amb_nats.config.NATSConfig`.
    :param options: the URL's options as keywords; they win over the query string.
    """

    scheme: ClassVar[str] = "nats"
    event_loops: ClassVar[frozenset[str]] = frozenset({"asyncio"})
    capabilities = CORE_CAPABILITIES  # the default mode's; an instance sets its own
    capabilities_by_mode: ClassVar[dict[str, Capabilities]] = {
        "core": CORE_CAPABILITIES,
        "jetstream": JETSTREAM_CAPABILITIES,
    }

    def __init__(self, url: str | NATSConfig = "nats://127.0.0.1:4222", **options: Any) -> None:
        config = url if isinstance(url, NATSConfig) else parse_url(url, **options)
        if options and isinstance(url, NATSConfig):
            raise ConfigurationError("options go with a URL, not with a parsed NATSConfig")
        self.config = config
        self.capabilities = (
            JETSTREAM_CAPABILITIES if config.mode == "jetstream" else CORE_CAPABILITIES
        )
        self._jetstream = config.mode == "jetstream"
        self._nc: Any = None
        self._js: Any = None
        self._streams: Streams | None = None
        self._subscriptions: set[Subscription] = set()
        self._lines = False  # the client can take pre-written header lines (amb_nats._wire)
        self._inbox: ReplyInbox | None = None
        self._inbox_lock = asyncio.Lock()
        self._outage = Outage(config.description, config.publish_timeout)

    @property
    def description(self) -> str:
        return self.config.description

    @property
    def mode(self) -> str:
        return self.config.mode

    # -- connection -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            return
        cfg = self.config
        tls = self._tls_context() if cfg.tls else None
        nc = await open_client(cfg, self.description, self, tls)
        self._outage = Outage(self.description, cfg.publish_timeout)
        self._nc = nc
        # Not _set_state: a transport connected again after aclose() leaves CLOSED too.
        self._state = ConnectionState.CONNECTED
        self._lines = hasattr(nc, "publish_lines")
        if nc.max_payload:
            self.capabilities = _with_limit(self.capabilities, nc.max_payload)
        if self._jetstream:
            self._js = nc.jetstream()
            try:
                await self._js.account_info()
            except Exception as exc:
                self._nc = None
                self._state = ConnectionState.IDLE
                await nc.close()
                raise NATSConnectError(
                    f"{self.description}: JetStream is not available ({type(exc).__name__})"
                ) from None
            self._streams = Streams(self._js, cfg)

    # What nats-py's callbacks report (see amb_nats._connect), about the client held or another.

    def current_client(self) -> Any:
        return self._nc

    def on_disconnected(self, nc: Any) -> None:
        if self._nc is not nc:
            return  # closing, or a failed connect()
        self._set_state(ConnectionState.RECONNECTING)
        self._outage.lost()
        if self._inbox is not None:
            self._inbox.fail_all()
        if self._jetstream:
            _fail_driver_requests(nc)
        log.warning("NATS disconnected from %s; reconnecting", self.description)

    def on_reconnected(self, nc: Any) -> None:
        if self._nc is not nc:
            return
        self._set_state(ConnectionState.CONNECTED)
        self._outage.back()
        log.warning("NATS reconnected to %s", self.description)

    def on_closed(self, nc: Any) -> None:
        if self._nc is not nc:  # aclose() lets go of its client first
            return
        self._set_state(ConnectionState.CLOSED)
        self._outage.back()  # publishes waiting for the connection find it closed
        log.error("NATS connection to %s closed by the driver", self.description)

    def _tls_context(self) -> ssl.SSLContext:
        """The system's trust store, or ``tls_ca``; plus a client certificate when given.

        :raises ConfigurationError: when a certificate or key file cannot be read.
        """
        cfg = self.config
        try:
            context = ssl.create_default_context(cafile=cfg.tls_ca)
            if cfg.tls_cert:
                context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"{self.description}: bad TLS files: {exc}") from None
        return context

    async def aclose(self) -> None:
        nc, self._nc = self._nc, None
        self._inbox = None
        if nc is not None:
            self._set_state(ConnectionState.CLOSED)
        self._outage.back()
        for sub in list(self._subscriptions):
            try:
                await asyncio.wait_for(sub.aclose(), 5.0)
            except Exception as exc:
                log.debug("closing a subscription failed: %r", exc)
        self._subscriptions.clear()
        if nc is None or nc.is_closed:
            return
        try:
            if nc.is_connected:
                await nc.flush(timeout=2)
        except Exception as exc:  # what was not flushed is lost with the connection: say so
            log.warning("flushing before closing %s failed: %r", self.description, exc)
        try:
            await asyncio.wait_for(nc.close(), 5.0)
        except Exception as exc:
            log.debug("closing the NATS connection failed: %r", exc)

    def _client(self) -> Any:
        nc = self._nc
        if nc is None or nc.is_closed:
            raise NotConnectedError(f"{self.description} is not connected")
        return nc

    # -- publishing -------------------------------------------------------------------------------

    def publish_now(self, message: Message) -> bool:
        """A core publish queued for nats-py's flusher without a coroutine (see
        ``Transport.publish_now``): connected, fast header path, nothing to wait for. A
        JetStream publish waits for its acknowledgement, so it is never done here."""
        nc = self._nc
        if nc is None or not self._lines:
            return False
        topic = message.topic
        if self._jetstream and not _is_inbox(topic):
            return False
        fast = header_text(message)  # raises ConfigurationError early, as publish() does
        if fast is None:
            return False
        return bool(nc.queue_lines(topic, fast[0], fast[1], _reply_subject(message)))

    async def publish(self, message: Message) -> None:
        nc = self._nc
        if nc is None:
            nc = self._client()
        topic = message.topic
        if not nc.is_connected:
            await self._outage.until_connected(nc, topic)
        if self._jetstream and not _is_inbox(topic):
            body, headers = encode(message)
            del headers[H_TOPIC]
            await self._js_publish(topic, body, headers, message.id)
            return
        reply = _reply_subject(message)
        fast = header_text(message) if self._lines else None  # raises ConfigurationError early
        if fast is None:
            body, headers = encode(message)
            del headers[H_TOPIC]  # the subject is the topic (wire format: amb-topic defaults to it)
            self._check_size(nc, topic, body, headers)
        try:
            if fast is not None:
                body = fast[0]
                await nc.publish_lines(topic, body, fast[1], reply)
            else:
                await nc.publish(topic, body, reply=reply, headers=headers)
        except nats.errors.MaxPayloadError as exc:
            raise self._too_large(nc, topic, body, exc) from None
        except Exception as exc:
            raise translate_publish_error(exc, topic, self.description) from None

    async def _js_publish(
        self, topic: str, body: bytes, headers: dict[str, str], msg_id: str
    ) -> None:
        nc = self._client()
        headers[MSG_ID_HEADER] = msg_id  # the server stores a retried publish once
        self._check_size(nc, topic, body, headers)
        streams = self._streams
        assert streams is not None
        await streams.ensure(topic)
        subject = streams.subject(topic)
        losses = self._outage.losses  # disconnections so far: did one cut this publish short?
        started = time.monotonic()
        try:
            await self._js.publish(subject, body, headers=headers)
            return
        except nats.js.errors.NoStreamResponseError:
            why = _LEADERLESS
        except ConnectionLost:
            why = _LOST
        except nats.errors.TimeoutError as exc:
            if time.monotonic() - started >= self.config.publish_timeout:
                raise self._js_error(exc, topic, nc, losses) from None
            why = _NO_ACK
        except nats.errors.MaxPayloadError as exc:
            raise self._too_large(nc, topic, body, exc) from None
        except Exception as exc:
            raise self._js_error(exc, topic, nc, losses) from None
        await self._js_publish_again(nc, topic, subject, body, headers, why, started, losses)

    def _js_error(self, exc: Exception, topic: str, nc: Any, losses: int) -> Exception:
        """A failed JetStream publish, typed: an acknowledgement missing because the connection
        went down since ``losses`` was read (or is down now) is ``NATSBrokerUnavailableError``."""
        lost = self._outage.losses != losses or not nc.is_connected
        return translate_publish_error(exc, topic, self.description, connection_lost=lost)

    async def _js_publish_again(
        self,
        nc: Any,
        topic: str,
        subject: str,
        body: bytes,
        headers: dict[str, str],
        why: str,
        started: float,
        losses: int,
    ) -> None:
        """A publish that got no acknowledgement, for a reason a retry can cure:

        - no stream answered (503, no responders). The stream was deleted behind our back (it is
          created again), or, in a cluster, it has no leader at the moment (just created with
          ``replicas`` > 1 and still electing, or its leader's node was lost);
        - the connection dropped while the acknowledgement was awaited (a node of a cluster was
          lost, say): nats-py reconnects, to another node when there is one, and the
          acknowledgement, if any, was lost with the old connection;
        - no acknowledgement came in time (the stream's leader died with the message, say) and
          ``publish_timeout`` leaves time to try again.

        Publish again, with the same ``Nats-Msg-Id`` (a retry of what the server did store is
        stored once), after short pauses and once connected, until ``publish_timeout`` has passed
        since the publish began (at least once more).

        :raises NATSBrokerUnavailableError: when no stream acknowledged it within the bound.
        """
        deadline = started + self.config.publish_timeout
        pause = 0.05
        # Sent, and then the connection or the acknowledgement was lost: it may be stored.
        maybe_stored = why in (_LOST, _NO_ACK)
        while True:
            try:
                if not nc.is_connected:
                    await self._outage.until_connected(nc, topic, deadline - time.monotonic())
                if why == _LEADERLESS:
                    await self._recreate_if_deleted(topic, subject)
                await self._js.publish(
                    subject, body, headers=headers, timeout=max(deadline - time.monotonic(), 1.0)
                )
                return
            except nats.js.errors.NoStreamResponseError:
                why = _LEADERLESS
            except ConnectionLost:
                why = _LOST
            except nats.errors.TimeoutError:
                why = _NO_ACK
            except NATSError as exc:  # recreating the stream failed, or no connection in time
                why = str(exc)
            except Exception as exc:
                raise self._js_error(exc, topic, nc, losses) from None
            if time.monotonic() + pause > deadline:
                stored = (
                    "; it may or may not be stored (publishing it again stores it once)"
                    if maybe_stored
                    else ""
                )
                raise NATSBrokerUnavailableError(
                    f"{self.description}: no JetStream stream acknowledged the message for "
                    f"{topic!r} within publish_timeout={self.config.publish_timeout:g}s "
                    f"({why}){stored}"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def _recreate_if_deleted(self, topic: str, subject: str) -> None:
        """Create the topic's stream again when the server no longer has one for its subject
        (asked of the meta leader, which answers while the stream itself has no leader).

        :raises NATSError: when creating it fails.
        """
        streams = self._streams
        assert streams is not None
        try:
            await self._js.find_stream_name_by_subject(subject)
            return  # it exists: leaderless for a moment
        except nats.js.errors.NotFoundError:
            streams.forget(namespace_of(topic))
        except Exception as exc:  # no meta leader either, or the connection: publish again
            log.debug("looking up the stream of %r: %r", topic, exc)
            return
        await streams.ensure(topic)

    @staticmethod
    def _check_size(nc: Any, topic: str, body: bytes, headers: dict[str, str]) -> None:
        """Refuse before sending what the server would refuse by closing the connection:
        ``max_payload`` bounds the header block and the body together.

        :raises MessageTooLargeError: naming the whole size and the server's limit.
        """
        size = len(body) + header_block_size(headers)
        if size > nc.max_payload:
            raise MessageTooLargeError(size, nc.max_payload, topic)

    @staticmethod
    def _too_large(nc: Any, topic: str, body: bytes, exc: Exception) -> MessageTooLargeError:
        """The client's refusal (it knows the size with the header block) as AMB's error."""
        return MessageTooLargeError(getattr(exc, "size", len(body)), nc.max_payload, topic)

    async def publish_many(self, messages: Iterable[Message]) -> None:
        """Core: buffered publishes, flushed once. JetStream: up to 256 acknowledgements awaited
        concurrently instead of one round trip per message."""
        if not self._jetstream:
            for message in messages:
                await self.publish(message)
            return
        batch: list[Message] = []
        for message in messages:
            batch.append(message)
            if len(batch) >= 256:
                await asyncio.gather(*(self.publish(m) for m in batch))
                batch.clear()
        if batch:
            await asyncio.gather(*(self.publish(m) for m in batch))

    async def publish_raw(
        self, topic: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Send bytes as another program would (no AMB metadata); for tests and tools. In
        JetStream mode onto the topic's prefixed subject, as a foreign producer must."""
        nc = self._client()
        if self._jetstream:
            assert self._streams is not None
            await self._streams.ensure(topic)
            await self._js.publish(self._streams.subject(topic), body, headers=headers)
        else:
            await nc.publish(topic, body, headers=headers)

    # -- request / reply --------------------------------------------------------------------------

    async def request(self, message: Message, timeout: float) -> Message:
        """Core NATS request through nats-py's shared inbox.

        :raises NoRespondersError: when no subscriber listens (reported by the server at once).
        :raises RequestTimeoutError: when no reply arrives within ``timeout``.
        """
        if self._jetstream:
            return await super().request(message, timeout)
        nc = self._client()
        fast = header_text(message) if self._lines else None
        headers: dict[str, str] | str
        if fast is not None:
            body, headers = fast
        else:
            body, headers = encode(message)
            del headers[H_TOPIC]
            self._check_size(nc, message.topic, body, headers)
        topic = message.topic
        if not nc.is_connected:
            timeout -= await self._outage.until_connected(nc, topic, timeout)
        inbox = self._inbox
        if inbox is None:
            inbox = await self._start_inbox(nc)
        try:
            # An AMB responder answers with the request's correlation id, or its id (bus.reply).
            expected = message.correlation_id or message.id
            reply = await inbox.request(topic, body, headers, timeout, expected)
        except (NoResponders, nats.errors.NoRespondersError):
            raise NoRespondersError(topic) from None
        except ConnectionLost:
            raise NATSError(
                f"{self.description}: the connection was lost while a request on {topic!r} "
                "waited for its reply"
            ) from None
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            raise RequestTimeoutError(topic, timeout) from None
        except nats.errors.MaxPayloadError as exc:
            raise self._too_large(nc, topic, body, exc) from None
        except Exception as exc:
            raise translate_publish_error(exc, topic, self.description) from None
        try:
            return decode(reply.data, reply.headers, reply.subject)
        except DecodeError as exc:
            raise DecodeError(f"the reply to a request on {topic!r} is unreadable: {exc}") from None

    async def _start_inbox(self, nc: Any) -> ReplyInbox:
        async with self._inbox_lock:
            if self._inbox is None:
                inbox = ReplyInbox(nc)
                try:
                    await inbox.start()
                except nats.errors.ConnectionClosedError:
                    raise NotConnectedError(f"{self.description} is not connected") from None
                except Exception as exc:
                    raise NATSError(f"cannot open the reply inbox: {exc!r}") from None
                self._inbox = inbox
            return self._inbox

    # -- subscribing ------------------------------------------------------------------------------

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        nc = self._client()
        if self._jetstream and not _is_inbox(spec.pattern):
            assert self._streams is not None
            sub: Subscription = await open_pull(self._js, self._streams, spec)
        else:
            try:
                nsub = await nc.subscribe(spec.pattern, queue=spec.group or "")
                await nc.flush(timeout=5)  # the server has the interest when this returns
            except nats.errors.ConnectionClosedError:
                raise NotConnectedError(f"{self.description} is not connected") from None
            except Exception as exc:
                raise NATSError(f"subscribing to {spec.pattern!r} failed: {exc!r}") from None
            if _is_inbox(spec.pattern) and spec.pattern != CANCEL_TOPIC:
                sub = await self._inbox_subscription(nc, nsub, spec.pattern)
            else:
                sub = CoreSubscription(nsub, native_reply=not self._jetstream)
        self._subscriptions.add(sub)
        return _Tracked(sub, self._subscriptions)

    async def _inbox_subscription(self, nc: Any, nsub: Any, inbox: str) -> Subscription:
        """The bus's inbox, with its per-request reply subjects (see :mod:`amb_nats._inbox`)."""
        forward = InboxSubscription.on_per_request(nsub._pending_queue, inbox)
        try:
            per_request = await nc.subscribe(f"{inbox}.*", cb=forward)
            await nc.flush(timeout=5)
        except Exception as exc:
            await nsub.unsubscribe()
            raise NATSError(f"subscribing to {inbox!r}.* failed: {exc!r}") from None
        return InboxSubscription(nsub, per_request)


class _Tracked(Subscription):
    """Forgets the subscription in the transport's set when it closes. The inner ``__anext__`` and
    ``ready`` are bound on the instance, so reading through the wrapper costs no extra call."""

    def __init__(self, inner: Subscription, owner: set[Subscription]) -> None:
        self._inner = inner
        self._owner = owner
        self.__anext__ = inner.__anext__  # type: ignore[method-assign]
        self.ready = inner.ready  # type: ignore[method-assign]

    async def __anext__(self) -> Any:  # replaced per instance by the inner one (no extra hop)
        return await self._inner.__anext__()

    async def aclose(self) -> None:
        self._owner.discard(self._inner)
        await self._inner.aclose()


def _fail_driver_requests(nc: Any) -> None:
    """End nats-py's requests that wait for a response (JetStream publishes' acknowledgements,
    JetStream API calls) with :class:`ConnectionLost` when the connection drops: the response, if
    any, was meant for the lost connection, and waiting out the timeout (5 s) would only delay the
    retry on the new one (see :meth:`NATSTransport._js_publish_again`). The callers of the API
    calls see a ``NATSError`` and reopen or retry as on any failure. A nats-py without this
    internal map keeps its timeouts."""
    for future in list(getattr(nc, "_resp_map", {}).values()):
        if not future.done():
            future.set_exception(ConnectionLost())


def _with_limit(caps: Capabilities, limit: int) -> Capabilities:
    import attrs

    return attrs.evolve(caps, max_message_size=limit)


NATSBroker = NATSTransport
"""The seed's name for the NATS transport."""
