"""JetStream: streams created or bound as needed, pull consumers, explicit ack, nak with delay.

Every subject here is AMB's prefixed one (:func:`amb_nats.naming.subject_of`); deliveries give the
bus the topic, with the prefix taken off.

Consumer groups are durable pull consumers (they outlive their members: the ``persistent``
capability); a fan-out subscriber gets an ephemeral pull consumer that is deleted when it closes
(and by the server after a minute without pulls if the process died). ``max_deliver`` is the bus's
``max_attempts`` plus one: the bus dead-letters on its own count at the last attempt, and the spare
delivery covers a consumer that died during that last attempt. ``ack_wait`` is the spec's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.js import api

from amb_core.errors import NotConnectedError, TransportError
from amb_core.transport import Delivery, Subscription, SubscriptionSpec, decode_delivery

from .errors import NATSError
from .exhausted import watch_exhausted
from .naming import consumer_name, namespace_of, stream_name, stream_subjects, subject_of

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from .config import NATSConfig

__all__ = ["JetStreamSubscription", "Streams", "open_pull"]

log = logging.getLogger("amb.nats")
POLL = 2.0  # seconds a pull request lingers on the server (also the pause after a lost one)
_STREAM_NAME_IN_USE = 10058
MSG_ID_HEADER = "Nats-Msg-Id"


def delivered(reply: str) -> int:
    """The delivery count from a JetStream ack subject, without building nats-py's ``Metadata``
    (which parses a datetime per message): ``$JS.ACK.<stream>.<consumer>.<delivered>...`` (9 tokens)
    or ``$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>...`` (11 or more)."""
    tokens = reply.split(".", 7)
    try:
        if reply.count(".") == 8:
            return int(tokens[4]) or 1
        return int(tokens[6]) or 1
    except (IndexError, ValueError):
        return 1


class Streams:
    """Creates (or binds to) the stream of each namespace once per transport."""

    def __init__(self, js: JetStreamContext, config: NATSConfig) -> None:
        self._js = js
        self._config = config
        self.prefix = config.stream_prefix
        self.skip = len(self.prefix) + 1  # subject[skip:] is the topic
        self._known: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def forget(self, namespace: str) -> None:
        self._known.pop(namespace, None)

    async def ensure(self, subject: str) -> str:
        """The stream name for ``subject``'s namespace, creating the stream when missing."""
        namespace = namespace_of(subject)
        name = self._known.get(namespace)
        if name is not None:
            return name
        async with self._lock:
            name = self._known.get(namespace)
            if name is None:
                name = await self._create(namespace)
                self._known[namespace] = name
        return name

    def subject(self, topic: str) -> str:
        """The subject a topic (or pattern) travels on."""
        return subject_of(self.prefix, topic)

    async def _create(self, namespace: str) -> str:
        cfg = self._config
        name = stream_name(cfg.stream_prefix, namespace)
        subjects = stream_subjects(cfg.stream_prefix, namespace)
        config = api.StreamConfig(
            name=name,
            subjects=subjects,
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE if cfg.storage == "file" else api.StorageType.MEMORY,
            max_age=cfg.max_age,
            max_bytes=cfg.max_bytes,
            num_replicas=cfg.replicas,
        )
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise NATSError(
                    f"cannot create JetStream stream {name!r}: {exc.description}"
                ) from None
            await self._check_subjects(name, subjects)  # it exists with other settings: bind
        except nats.errors.ConnectionClosedError:
            raise NotConnectedError("the NATS connection is closed") from None
        except TransportError:
            raise
        except Exception as exc:
            raise NATSError(f"cannot create JetStream stream {name!r}: {exc!r}") from None
        return name

    async def _check_subjects(self, name: str, subjects: list[str]) -> None:
        """An existing stream keeps its settings, but must capture AMB's subjects: one made by an
        AMB before the prefixed layout captures ``<namespace>.>`` instead, and publishing into it
        would fail without saying why.

        :raises NATSError: naming the subjects the stream lacks.
        """
        info = await self._js.stream_info(name)
        have = set(info.config.subjects or ())
        missing = [s for s in subjects if s not in have]
        if missing:
            raise NATSError(
                f"JetStream stream {name!r} exists but does not capture {', '.join(missing)} "
                f"(it captures {', '.join(sorted(have)) or 'nothing'}): a stream of the layout "
                "before AMB's subject prefix? See docs/backends/nats.md, 'Streams'"
            )


class _JSDelivery(Delivery):
    __slots__ = ("_msg", "_owner", "_settled")

    def __init__(self, owner: JetStreamSubscription, msg: Msg, attempt: int) -> None:
        headers = msg.headers
        if headers and MSG_ID_HEADER in headers:  # JetStream's dedup id is not a user header
            headers = {k: v for k, v in headers.items() if k != MSG_ID_HEADER}
        topic = msg.subject[owner.skip :]
        message, error = decode_delivery(msg.data, headers, topic, attempt)
        self.message = message
        self.attempt = attempt
        self.error = error
        self._msg = msg
        self._owner = owner
        self._settled = False

    async def ack(self) -> None:
        if self._settled:
            return
        self._settled = True
        self._owner.unsettled.pop(id(self), None)
        try:
            await self._msg.ack()
        except Exception as exc:
            raise NATSError(f"ack failed: {exc!r}") from None

    async def nack(self, delay: float | None = None) -> None:
        if self._settled:
            return
        self._settled = True
        self._owner.unsettled.pop(id(self), None)
        try:
            await self._msg.nak(delay=delay if delay else None)
        except Exception as exc:
            raise NATSError(f"nak failed: {exc!r}") from None


class JetStreamSubscription(Subscription):
    """A pull consumer read in batches of ``prefetch``; settles each delivery explicitly."""

    def __init__(
        self,
        psub: Any,
        js: JetStreamContext,
        stream: str,
        consumer: str,
        durable: bool,
        batch: int,
        skip: int,
    ) -> None:
        self.skip = skip  # subject[skip:] is the topic
        self._psub = psub
        self._js = js
        self.stream = stream
        self.consumer = consumer
        self._durable = durable
        self._batch = max(1, batch)
        self._buffer: deque[Msg] = deque()
        self.unsettled: dict[int, _JSDelivery] = {}
        self._closed = False
        self._unserved = 0  # pulls in a row answered 503 (see _leaderless)
        self.advisories: Any = None

    async def __anext__(self) -> Delivery:
        buffer = self._buffer
        while not buffer:
            if self._closed:
                raise StopAsyncIteration
            try:
                msgs = await self._psub.fetch(self._batch, timeout=POLL)
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
                await self._leaderless()  # raises when the consumer is gone: reopened by the bus
                continue
            except nats.errors.ConnectionClosedError:
                if self._closed:
                    raise StopAsyncIteration from None
                raise NotConnectedError("the NATS connection is closed") from None
            except Exception as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                raise NATSError(
                    f"pulling from {self.stream}/{self.consumer} failed: {exc!r}"
                ) from None
            buffer.extend(msgs)
            self._unserved = 0
        msg = buffer.popleft()
        delivery = _JSDelivery(self, msg, delivered(msg.reply))
        self.unsettled[id(delivery)] = delivery
        return delivery

    async def _leaderless(self) -> None:
        """A pull answered 503 (no responders): nobody serves the consumer's pull requests. In a
        cluster that is a consumer without a leader for a moment, just created (its Raft group
        still electing) or after its leader's node was lost: pull again after a pause, on the same
        consumer, which keeps its place in the stream. Reopening it instead would delete a fan-out
        subscriber's ephemeral consumer and make a new one that starts at the *new* messages,
        losing those stored meanwhile. When the consumer itself is gone (a restarted single server
        without it, deleted by hand), raise: the bus reopens the subscription.

        :raises NATSError: when the server says the consumer does not exist.
        """
        self._unserved += 1
        await asyncio.sleep(min(0.05 * self._unserved, 0.5))
        if self._unserved % 10 != 1:
            return
        try:  # the first time and every tenth, ask whether the consumer still exists
            await self._js.consumer_info(self.stream, self.consumer, timeout=POLL)
        except nats.js.errors.NotFoundError:
            raise NATSError(f"JetStream consumer {self.stream}/{self.consumer} is gone") from None
        except Exception as exc:  # no meta leader either, or the connection is down: wait on
            log.debug("consumer_info %s/%s: %r", self.stream, self.consumer, exc)

    async def aclose(self) -> None:
        """Give back what was taken but not settled (nak now rather than after ack_wait),
        unsubscribe (before any drain: nats-py's drain hangs on an open pull subscription),
        and delete the consumer when it is an ephemeral fan-out one."""
        if self._closed:
            return
        self._closed = True
        left = [d._msg for d in self.unsettled.values()] + list(self._buffer)
        self.unsettled.clear()
        self._buffer.clear()
        for msg in left:
            try:
                await msg.nak()
            except Exception as exc:
                log.debug("nak on close failed (ack_wait will redeliver): %r", exc)
                break  # the connection is gone: the rest would fail alike
        for sub in (self._psub, self.advisories):
            if sub is None:
                continue
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("unsubscribe failed: %r", exc)
        if not self._durable:
            try:
                await asyncio.wait_for(self._js.delete_consumer(self.stream, self.consumer), 2.0)
            except Exception as exc:  # the server drops it after inactive_threshold anyway
                log.debug("deleting ephemeral consumer %s failed: %r", self.consumer, exc)


_CREATE_ATTEMPTS = 3


async def _pull_subscribe(
    js: JetStreamContext, subject: str, durable: str | None, stream: str, config: Any
) -> Any:
    """nats-py's ``pull_subscribe``, tried again when creating the consumer got no answer in time
    or a 503: in a cluster, a consumer of a replicated stream is answered for once its own Raft
    group has a leader, which takes longer than nats-py's 5 s on a loaded machine, or while the
    stream itself is electing one. Creating a durable consumer again with the same settings is a
    no-op; an ephemeral one that was created after all without our hearing of it is deleted by
    the server after its ``inactive_threshold`` (60 s without pulls)."""
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            return await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
        except (asyncio.TimeoutError, nats.js.errors.ServiceUnavailableError) as exc:
            if attempt == _CREATE_ATTEMPTS:
                raise
            log.warning("creating a consumer on %s: %r; trying again", stream, exc)
            await asyncio.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


async def open_pull(
    js: JetStreamContext, streams: Streams, spec: SubscriptionSpec
) -> JetStreamSubscription:
    """Create or bind the consumer for ``spec`` and return its subscription."""
    stream = await streams.ensure(spec.pattern)
    durable = spec.group is not None
    name = consumer_name(spec.group, spec.pattern) if spec.group is not None else None
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL if spec.start == "earliest" else api.DeliverPolicy.NEW,
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_attempts + 1 if spec.max_attempts else -1,
        max_ack_pending=max(1000, spec.prefetch * 10),
        inactive_threshold=None if durable else 60.0,
    )
    try:
        psub = await _pull_subscribe(js, streams.subject(spec.pattern), name, stream, config)
    except nats.errors.ConnectionClosedError:
        raise NotConnectedError("the NATS connection is closed") from None
    except nats.js.errors.NotFoundError:
        streams.forget(namespace_of(spec.pattern))
        raise NATSError(f"JetStream stream {stream!r} vanished; retry") from None
    except TransportError:
        raise
    except Exception as exc:
        raise NATSError(f"cannot open a JetStream consumer on {stream!r}: {exc!r}") from None
    consumer = name if name is not None else str(getattr(psub, "_consumer", ""))
    sub = JetStreamSubscription(psub, js, stream, consumer, durable, spec.prefetch, streams.skip)
    if spec.max_attempts:
        try:
            sub.advisories = await watch_exhausted(js._nc, js, streams, stream, consumer)
        except Exception as exc:
            log.warning("cannot watch %s/%s for exhausted messages: %r", stream, consumer, exc)
    return sub
