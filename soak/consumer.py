"""The consumer process: ``python -m soak.consumer URL TOPIC GROUP OUT [options]``.

A :class:`~amb_core.MessageBus` with one group subscription. The handler raises for poison messages
(so the bus retries them and then dead-letters them) and, for every other message, appends its
number to ``OUT`` with one ``write`` before it returns. The bus acknowledges only after the handler
returns, so a SIGKILL can never lose a line for a message that was acknowledged; at worst a message
whose line was written is delivered again (a duplicate, which the soak counts). ``write`` hands the
line to the kernel, which keeps it when the process is killed: no flush or fsync is needed against
SIGKILL (the soak never crashes the machine).

It prints ``ready`` once the broker has the subscription and closes the bus cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from typing import Any

import anyio

from amb_core import Message, MessageBus, RetryPolicy

__all__ = ["PoisonError", "main"]


class PoisonError(Exception):
    """What the handler raises for a poison message."""


class _NoExpectedRetries(logging.Filter):
    """Drops the bus's warning for each failed attempt of a poison message (thousands of expected
    lines); its error when a message is given up, and everything else, stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("handler for %r failed (attempt")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soak.consumer")
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("out", help="file that receives one line per handled message")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--ack-wait", type=float, default=10.0)
    parser.add_argument("--attempts", type=int, default=3, help="deliveries of a poison message")
    parser.add_argument("--start", choices=["new", "earliest"], default="new")
    return parser.parse_args(argv)


def retry_policy(attempts: int) -> RetryPolicy:
    """Few attempts, short delays: poison reaches the dead letters within about a second."""
    return RetryPolicy(max_attempts=attempts, initial_delay=0.05, multiplier=2.0, max_delay=0.5)


async def consume(args: argparse.Namespace) -> None:
    out = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def handle(message: Message) -> None:
        body: Any = message.payload
        if body["poison"]:
            raise PoisonError(f"poison message {body['i']}")
        os.write(out, b"%d\n" % body["i"])

    bus = MessageBus.from_url(args.url, retry=retry_policy(args.attempts), name="soak-consumer")
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with bus:
            await bus.subscribe(
                args.topic,
                handle,
                group=args.group,
                concurrency=args.concurrency,
                ack_wait=args.ack_wait,
                start=args.start,
            )
            print("ready", flush=True)
            async for _ in signals:
                break
    os.close(out)


def _die_with_parent() -> None:
    """A soak that is itself killed leaves no consumer behind (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> None:
    _die_with_parent()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoExpectedRetries())
    anyio.run(consume, _arguments(sys.argv[1:] if argv is None else argv), backend="asyncio")


if __name__ == "__main__":
    main()
