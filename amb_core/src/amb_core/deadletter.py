"""Retry policy, dead letters, and listing and replaying them.

A handler that raises gets its message redelivered with exponential backoff (``nack(delay=...)``,
natively delayed where the broker can); after ``max_attempts`` deliveries the message becomes a
:class:`DeadLetter` and goes to the dead-letter handlers (registered through the
``amb_register_dead_letter_handlers`` hook). The default handler publishes it to ``dlq.<topic>``, the
payload unchanged and the reason in headers, so dead letters live on the same broker, survive as long
as it keeps messages, and can be listed and replayed from anywhere (``amb dlq list|replay``).

A dead letter is stored only when *every* handler returns: one that raises means "not stored". The
message is then not settled on an at-least-once transport: it is nacked and comes back after the
retry policy's ``max_delay`` (30 s by default), is handled again, and is dead-lettered again if it
still fails, paced by that delay until storing works, so handlers see a letter at least once and
should be idempotent. On an at-most-once transport the message cannot come back: the loss is logged
as an error and counted in :attr:`DeadLetters.lost`. A letter the broker refuses as too large is
stored in a reduced form: the reason and metadata, and a marked excerpt of the body
(``amb-dlq-truncated`` holds the original body's size); such letters are listed but never replayed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Literal, Protocol

import anyio
import attrs

from .errors import MessageTooLargeError
from .message import Message, new_id
from .topics import MAX_TOPIC_LENGTH
from .transport import SubscriptionSpec
from .wire import encode_payload

if TYPE_CHECKING:
    from .bus import MessageBus

__all__ = [
    "DLQ_PREFIX",
    "H_DLQ_AT",
    "H_DLQ_ATTEMPTS",
    "H_DLQ_ERROR",
    "H_DLQ_ORIGINAL_ID",
    "H_DLQ_REASON",
    "H_DLQ_TOPIC",
    "H_DLQ_TRUNCATED",
    "REPLAYED_PREFIX",
    "DeadLetter",
    "DeadLetterHandler",
    "DeadLetterReason",
    "DeadLetters",
    "RetryPolicy",
    "dlq_topic",
    "publish_to_dlq",
]

log = logging.getLogger("amb.deadletter")
DLQ_PREFIX = "dlq."
H_DLQ_REASON = "amb-dlq-reason"
H_DLQ_ERROR = "amb-dlq-error"
H_DLQ_ATTEMPTS = "amb-dlq-attempts"
H_DLQ_TOPIC = "amb-dlq-topic"
H_DLQ_ORIGINAL_ID = "amb-dlq-original-id"
H_DLQ_AT = "amb-dlq-at"
H_DLQ_TRUNCATED = "amb-dlq-truncated"
EXCERPT_BYTES = 4096
"""The most of a too-large body a reduced dead letter keeps (less where the broker's limit is
small: a quarter of it)."""
DeadLetterReason = Literal[
    "handler_error", "max_attempts", "undecodable", "expired", "rejected", "unroutable", "invalid"
]


@attrs.frozen(slots=True)
class RetryPolicy:
    """How often and how patiently a failing message is retried.

    :param max_attempts: deliveries in all (1 means no retry).
    :param initial_delay: seconds before the second delivery.
    :param multiplier: growth of the delay per attempt.
    :param max_delay: the cap on one delay.
    :param jitter: random spread, as a fraction of the delay, so that retries do not stampede.
    """

    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    initial_delay: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_delay: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the delivery after ``attempt`` (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** max(0, attempt - 1))
        if self.jitter and base:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)


@attrs.frozen(slots=True)
class DeadLetter:
    """A message that will not be handled, and why.

    :param message: the message (for ``undecodable``, its payload is the raw bytes).
    :param reason: why it was given up.
    :param error: the last error's text.
    :param attempts: deliveries made.
    :param subscription: the pattern of the subscription that gave up on it.
    """

    message: Message
    reason: DeadLetterReason
    error: str
    attempts: int
    subscription: str


class DeadLetterHandler(Protocol):
    """Receives every dead letter of a bus. Raising means the letter was not stored: the message
    is then given back (at-least-once transports) or counted as lost (see the module's text)."""

    def __call__(self, dead: DeadLetter, bus: MessageBus) -> Awaitable[None]: ...


def dlq_topic(topic: str) -> str:
    """The dead-letter topic for ``topic``: ``dlq.<topic>`` (never ``dlq.dlq.…``)."""
    if topic.startswith(DLQ_PREFIX):
        return topic
    name = DLQ_PREFIX + topic
    return name if len(name) <= MAX_TOPIC_LENGTH else DLQ_PREFIX + "overlong"


async def publish_to_dlq(dead: DeadLetter, bus: MessageBus) -> None:
    """The default handler: publish to ``dlq.<topic>`` with reason, error, attempts and topic.

    A letter the broker refuses as too large is published again in a reduced form (see
    :func:`reduced`); when even that fails, the error propagates: the letter is not stored.
    """
    original = dead.message
    if original.topic.startswith(DLQ_PREFIX):
        log.error("dead letter from a dead-letter topic %s dropped: %s", original.topic, dead.error)
        return
    headers = dict(original.headers)
    headers.update(_dlq_headers(dead, 2000))
    topic = dlq_topic(original.topic)
    try:
        await bus.publish(
            topic,
            original.payload,
            headers=headers,
            correlation_id=original.correlation_id,
            key=original.key,
            sender=original.sender,
        )
    except MessageTooLargeError as exc:
        body = _body_of(original.payload)
        log.warning(
            "dead letter of %s (%d bytes) is too large for the broker (%s): storing an excerpt",
            original.id,
            len(body),
            exc,
        )
        await bus.publish(
            topic,
            reduced(body, exc.limit),
            headers={**_dlq_headers(dead, 500), H_DLQ_TRUNCATED: str(len(body))},
            correlation_id=original.correlation_id,
            key=original.key,
            sender=original.sender,
        )


def _dlq_headers(dead: DeadLetter, error_chars: int) -> dict[str, str]:
    original = dead.message
    return {
        H_DLQ_REASON: dead.reason,
        H_DLQ_ERROR: dead.error[:error_chars],
        H_DLQ_ATTEMPTS: str(dead.attempts),
        H_DLQ_TOPIC: original.topic,
        H_DLQ_ORIGINAL_ID: original.id,
        H_DLQ_AT: repr(time.time()),
    }


def _body_of(payload: object) -> bytes:
    try:
        return encode_payload(payload)[0]
    except Exception:  # a payload that never was JSON: its text is the best excerpt there is
        return repr(payload).encode()


def reduced(body: bytes, limit: int) -> bytes:
    """The excerpt a reduced dead letter carries: the body's first bytes (at most
    ``EXCERPT_BYTES``, and at most a quarter of the broker's ``limit`` when it has a small one), as
    bytes, whatever the payload was; its ``amb-dlq-truncated`` header marks it."""
    size = EXCERPT_BYTES if limit <= 0 else max(0, min(EXCERPT_BYTES, limit // 4))
    return body[:size]


def original_of(dead: Message) -> Message:
    """The message to publish again for a dead letter: its first topic, headers without ``amb-dlq-*``,
    a new id and no TTL (it expired once already)."""
    topic = dead.headers.get(H_DLQ_TOPIC) or dead.topic.removeprefix(DLQ_PREFIX)
    headers = {k: v for k, v in dead.headers.items() if not k.startswith("amb-dlq-")}
    return Message(
        topic=topic,
        payload=dead.payload,
        headers=headers,
        correlation_id=dead.correlation_id,
        sender=dead.sender,
        key=dead.key,
        priority=dead.priority,
    )


REPLAYED_PREFIX = "amb.replayed."
"""Where :meth:`DeadLetters.replay` records each letter it replayed (``amb.replayed.<topic>``,
payload the letter's id), so that :meth:`DeadLetters.replayed` can tell later which were."""


def _newer(letter: Message, started: float) -> bool:
    """True when ``letter`` was dead-lettered after ``started`` (its ``amb-dlq-at``)."""
    try:
        return float(letter.headers.get(H_DLQ_AT, "0")) > started
    except ValueError:
        return False


class DeadLetters:
    """List and replay what the default handler published to ``dlq.*`` topics.

    Both read the broker's retained dead letters, so they need a transport with the ``replay`` or
    ``dead_letter_replay`` capability; ``list`` only looks, ``replay`` consumes with the durable
    group ``amb-dlq-replay`` (so a dead letter is replayed once however often ``replay`` runs,
    unless ``again=True`` asks for every retained letter once more). Each replay is recorded on
    ``amb.replayed.<topic>``; :meth:`replayed` reads those records back where the broker retains
    ordinary topics (``replay``: memory, Redis Streams, JetStream, Kafka), and returns None where it
    does not (SQS keeps only dead letters).
    """

    REPLAY_GROUP = "amb-dlq-replay"

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    @property
    def lost(self) -> int:
        """Dead letters that could not be stored on an at-most-once transport (the message could
        not come back either): each also logged as an error. Zero is the only good value."""
        return self._bus._dead_letters_lost

    def _spec(self, pattern: str, group: str | None) -> SubscriptionSpec:
        return SubscriptionSpec(pattern=DLQ_PREFIX + pattern, group=group, start="earliest")

    async def list(
        self, pattern: str = ">", *, limit: int = 100, idle: float = 0.5
    ) -> list[Message]:
        """Dead letters whose original topic matches ``pattern``, oldest first.

        Reading stops at ``limit`` or after ``idle`` seconds without a new one.

        :raises UnsupportedError: when the transport cannot read retained messages.
        """
        found: list[Message] = []
        async with self._bus._raw_subscription(self._spec(pattern, None)) as sub:
            while len(found) < limit:
                with anyio.move_on_after(idle):
                    delivery = await sub.__anext__()
                    found.append(delivery.message)
                    continue
                break
        return found

    async def replayed(self, pattern: str = ">", *, idle: float = 0.5) -> set[str] | None:
        """Ids of the dead letters (of original topics matching ``pattern``) that :meth:`replay`
        published again, or None when the broker cannot say (no ``replay`` capability)."""
        if not self._bus.transport.capabilities.replay:
            return None
        ids: set[str] = set()
        spec = SubscriptionSpec(pattern=REPLAYED_PREFIX + pattern, start="earliest")
        async with self._bus._raw_subscription(spec) as sub:
            while True:
                with anyio.move_on_after(idle):
                    delivery = await sub.__anext__()
                    if isinstance(delivery.message.payload, str):
                        ids.add(delivery.message.payload)
                    continue
                break
        return ids

    async def replay(
        self,
        pattern: str = ">",
        *,
        limit: int | None = None,
        idle: float = 0.5,
        again: bool = False,
    ) -> int:
        """Publish dead letters again to their original topics; return how many.

        Replay stops at the first letter dead-lettered after it began (a replayed message that
        failed again), leaving it for the next replay, so that it always ends. A reduced letter
        (``amb-dlq-truncated``: only an excerpt of its body was kept) is not published again,
        which would hand a handler a cut body: it is logged and taken off the replay group's
        queue (where the broker retains it, :meth:`list` still shows it).

        ``again=True`` replays every retained letter once more (a fresh group reads them from
        the start), including those replayed before.

        :raises UnsupportedError: when the transport cannot read retained messages.
        """
        count = 0
        started = time.time()
        group = f"{self.REPLAY_GROUP}-{new_id()}" if again else self.REPLAY_GROUP
        async with self._bus._raw_subscription(self._spec(pattern, group)) as sub:
            while limit is None or count < limit:
                with anyio.move_on_after(idle):
                    delivery = await sub.__anext__()
                    letter = delivery.message
                    if _newer(letter, started):  # a replayed message that failed again
                        break  # unsettled: it waits for the next replay
                    if H_DLQ_TRUNCATED in letter.headers:
                        log.warning(
                            "dead letter %s holds only an excerpt of %s bytes: not replayed",
                            letter.headers.get(H_DLQ_ORIGINAL_ID, letter.id),
                            letter.headers[H_DLQ_TRUNCATED],
                        )
                    else:
                        original = original_of(letter)
                        await self._bus._publish_message(original)
                        await self._bus.publish(REPLAYED_PREFIX + original.topic, letter.id)
                        count += 1
                    await delivery.ack()
                    continue
                break
        return count
