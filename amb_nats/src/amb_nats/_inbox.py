"""The bus's reply inbox on core NATS, told at once when a request reaches nobody.

A request, stream or gather that the bus sends through its inbox (``_INBOX.<bus id>``) goes out with
the NATS reply subject ``_INBOX.<bus id>.<correlation id>``. AMB responders still answer to the
``amb-reply-to`` header (the inbox itself); the per-request subject is for the server: when no
subscriber takes the request, it sends a 503 status there at once. That status becomes a message
on the inbox with the request's correlation id and ``amb-no-responders: 1`` (see
:data:`amb_core.inbox.H_NO_RESPONDERS`): a gather ends empty at once, a stream raises
``NoRespondersError``, instead of waiting out their timeouts. A non-AMB responder that answers
with ``msg.respond(...)`` reaches the per-request subject too, and its reply is handed over with
the correlation id filled in.
"""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from amb_core.inbox import H_NO_RESPONDERS
from amb_core.wire import H_CORRELATION_ID

from .core import CoreSubscription

__all__ = ["InboxSubscription", "request_reply_subject"]

log = logging.getLogger("amb.nats")
_STATUS = "Status"
_NO_RESPONDERS = "503"


def request_reply_subject(reply_to: str, correlation_id: str) -> str:
    """The NATS reply subject of a request the bus sends through its inbox ``reply_to``."""
    return f"{reply_to}.{correlation_id}"


class InboxSubscription(CoreSubscription):
    """The inbox subscription plus ``<inbox>.*``, whose messages join the inbox's own queue."""

    def __init__(self, sub: Any, per_request: Any) -> None:
        super().__init__(sub, native_reply=False)
        self._per_request = per_request

    @staticmethod
    def on_per_request(queue: Any, inbox: str) -> Any:
        """The callback of the ``<inbox>.*`` subscription, feeding ``queue`` (the inbox's)."""

        async def forward(msg: Msg) -> None:
            correlation_id = msg.subject.rsplit(".", 1)[-1]
            headers = dict(msg.headers or {})
            status = headers.get(_STATUS)
            if status is not None and not msg.data:
                if status != _NO_RESPONDERS:
                    return  # another server status: not an answer
                headers = {H_NO_RESPONDERS: "1", H_CORRELATION_ID: correlation_id}
                data = b"null"
            else:
                headers.setdefault(H_CORRELATION_ID, correlation_id)
                data = msg.data
            queue.put_nowait(Msg(msg._client, subject=inbox, data=data, headers=headers))

        return forward

    async def aclose(self) -> None:
        try:
            await self._per_request.unsubscribe()
        except (nats.errors.Error, OSError) as exc:  # a closed connection has nothing left
            log.debug("unsubscribing the per-request inbox subjects failed: %r", exc)
        await super().aclose()
