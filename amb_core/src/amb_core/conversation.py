"""What a streamed reply and a gather share: one request sent through the bus's reply inbox, whose
replies go to a receiver of its own until the conversation ends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .deadlines import bounded_timeout
from .message import new_id
from .topics import validate_topic

if TYPE_CHECKING:
    from .bus import MessageBus
    from .inbox import Inbox, Receiver

__all__ = ["InboxConversation"]


class InboxConversation:
    """A request on ``topic`` whose replies the inbox hands to :meth:`_send`'s receiver."""

    def __init__(
        self,
        bus: MessageBus,
        topic: str,
        payload: Any,
        *,
        timeout: float,
        headers: Mapping[str, str] | None,
        key: str | None,
    ) -> None:
        validate_topic(topic)
        self.topic = topic
        self.correlation_id = new_id()
        self._bus = bus
        self._payload = payload
        self._timeout = timeout
        self._headers = headers
        self._key = key
        self._inbox: Inbox | None = None
        self._deadline = 0.0
        self._done = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.topic!r} {self.correlation_id}>"

    def _budget(self) -> float:
        """The request's timeout, shortened inside a handler to what is left of its deadline."""
        self._bus._require_connected()
        timeout = bounded_timeout(self._timeout)
        self._deadline = time.monotonic() + timeout
        return timeout

    async def _send(
        self, receiver: Receiver, timeout: float, extra: Mapping[str, str] | None = None
    ) -> None:
        """Register ``receiver`` for the replies and publish the request with its deadline."""
        bus = self._bus
        inbox = self._inbox = await bus._inbox_ready()
        inbox.register(self.correlation_id, receiver)
        headers = self._headers if extra is None else {**(self._headers or {}), **extra}
        try:
            await bus.publish(
                self.topic,
                self._payload,
                headers=headers,
                key=self._key,
                ttl=timeout,  # the deadline travels with the request
                correlation_id=self.correlation_id,
                reply_to=inbox.topic,
            )
        except Exception:
            self._finish(False)  # not sent: nobody to tell
            raise
        except BaseException:  # given up while publish waited: it may have been delivered
            self._finish(True)
            raise

    def _finish(self, cancel_to: str | bool | None) -> None:
        """End once: stop taking replies and, unless ``cancel_to`` is None, tell the responders
        to stop (``False``: nobody to tell; a topic: that responder's inbox; ``True``: all)."""
        if self._done:
            return
        self._done = True
        if self._inbox is None:
            return
        self._inbox.unregister(self.correlation_id)
        if cancel_to is not False:
            to = None if cancel_to is True else cancel_to
            self._bus._cancellations().cancel_later(self.correlation_id, to)
