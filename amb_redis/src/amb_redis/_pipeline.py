"""Group commit: commands that arrive while one is in flight leave together in one pipeline.

redis-py spends ~150 us of CPU per awaited command, and pipelining 100 commands is about five times
faster (PERFORMANCE.md). A lone caller sends its command at once (no extra task, no added latency);
callers arriving while a round trip is in flight queue up, and the queue leaves as one pipeline as
soon as that round trip ends. Lost connections are retried with backoff within ``timeout`` seconds,
so a Redis restart delays publishes instead of failing them (a retried XADD may be stored twice:
at-least-once). With ``wait`` set, every pipeline that writes ends with ``WAIT`` on each node it
wrote to (on the same connection: WAIT counts that connection's writes), and a write that fewer
replicas than asked acknowledged fails (:mod:`._wait`). Each retry is bounded by the time left, so a
command ends within ``timeout`` of its first failure; the first attempt, sent without a timer (none
on the hot path), is bounded by redis-py's ``socket_timeout`` (5 s by default) when the connection
hangs half-open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from amb_core.backoff import Backoff

from ._tasks import bounded, cancel_and_wait
from ._wait import WRITES, Wait, plan_waits
from .errors import RedisPublishError, RedisUnavailableError, is_connection_error

__all__ = ["Pipeliner"]

log = logging.getLogger("amb.redis")
_Call = tuple[tuple[Any, ...], "asyncio.Future[Any]", float]  # args, reply, time of the call


class Pipeliner:
    """Sends commands on ``client``, batching the ones that arrive concurrently.

    :param client: a ``redis.asyncio.Redis``.
    :param limit: the most commands per pipeline.
    :param timeout: how long to retry through connection errors before failing.
    :param scrub: removes secrets from error text.
    :param lost: called with the error when a command meets a lost connection.
    :param back: called when a command succeeds after its own connection errors.
    :param wait: replicas and milliseconds for ``WAIT`` after writes (``None``: no WAIT).
    :param node_of: in a cluster, the node a key lives on (WAIT then goes to each node written).
    """

    def __init__(
        self,
        client: Any,
        limit: int,
        timeout: float,
        scrub: Callable[[str], str],
        lost: Callable[[BaseException], None] = lambda exc: None,
        back: Callable[[], None] = lambda: None,
        wait: Wait | None = None,
        node_of: Callable[[Any], Any] | None = None,
    ) -> None:
        self._client = client
        self._limit = limit
        self._timeout = timeout
        self._scrub = scrub
        self._lost = lost
        self._back = back
        self._wait = wait
        self._node_of = node_of
        self._busy = False
        self._queue: list[_Call] = []
        self._task: asyncio.Task[None] | None = None

    async def call(self, *args: Any) -> Any:
        """Run one command; returns its reply.

        :raises RedisPublishError: when Redis refused it.
        :raises RedisUnavailableError: when Redis stayed unreachable for ``timeout`` after the call
            (also a call queued behind others: each keeps its own deadline).
        """
        started = time.monotonic()
        if self._busy:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.append((args, future, started))
            return await future
        self._busy = True
        try:
            return await self._retrying(self._one, args, started)
        finally:
            if self._queue:
                self._task = asyncio.get_running_loop().create_task(self._drain())
            else:
                self._busy = False

    async def _one(self, args: tuple[Any, ...]) -> Any:
        if self._wait is None or args[0] not in WRITES:
            return await self._client.execute_command(*args)
        (result,) = await self._send([args])
        if isinstance(result, Exception):
            raise result
        return result

    async def _many(self, batch: list[_Call]) -> list[Any]:
        return await self._send([args for args, _, _ in batch])

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline: the commands, then a WAIT per node written to when ``wait`` is set."""
        pipe = self._client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        waits = plan_waits(commands, self._node_of) if self._wait is not None else []
        for target, _ in waits:
            assert self._wait is not None
            extra = {} if target is None else {"target_nodes": target}
            pipe.execute_command("WAIT", self._wait.replicas, self._wait.timeout_ms, **extra)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        for result in results:  # a node lost mid-pipeline: retry it all (at least once)
            if isinstance(result, Exception) and is_connection_error(result):
                raise result
        replies = results[: len(commands)]
        if self._wait is not None:
            self._wait.check(waits, results[len(commands) :], replies, self._scrub)
        return replies

    async def _retrying(self, send: Callable[[Any], Any], what: Any, started: float) -> Any:
        """``send(what)``, retried through connection errors until ``timeout`` after ``started``
        (the time of the call, or of the earliest call in a batch)."""
        try:
            return await send(what)
        except Exception as exc:
            error: BaseException = exc
        deadline = started + self._timeout
        backoff = Backoff(initial=0.05, cap=1.0)
        while True:
            if not is_connection_error(error):
                raise RedisPublishError(self._scrub(f"Redis refused: {error}")) from None
            self._lost(error)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RedisUnavailableError(
                    self._scrub(f"Redis unreachable for {self._timeout:g}s: {error!r}")
                ) from None
            delay = backoff.next()
            log.warning(
                "Redis connection lost (%s); retrying in %.2fs", self._scrub(repr(error)), delay
            )
            await asyncio.sleep(min(delay, left))
            try:
                with bounded(max(0.01, deadline - time.monotonic())):
                    result = await send(what)
            except Exception as exc:
                error = exc
                continue
            self._back()
            return result

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
                try:
                    results = await self._retrying(self._many, batch, batch[0][2])
                except BaseException as exc:
                    error = exc if isinstance(exc, Exception) else RedisPublishError("cancelled")
                    for _, future, _ in batch:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future, _), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(
                            RedisPublishError(self._scrub(f"Redis refused: {result}"))
                        )
                    else:
                        future.set_result(result)
        finally:
            self._busy = False
            self._task = None

    async def aclose(self) -> None:
        """Fail what is still queued and stop the drain task."""
        task, self._task = self._task, None
        try:
            if task is not None:
                await cancel_and_wait(task, "the Redis pipeline drain")
        finally:  # also when the caller is cancelled meanwhile: nobody waits forever
            for _, future, _ in self._queue:
                if not future.done():
                    future.set_exception(RedisPublishError("the transport closed"))
            self._queue = []
            self._busy = False
