"""The ``amb`` command: inspect backends, publish, subscribe, ask, manage dead letters, run the demo.

Every command that talks to a broker takes ``--url`` (default: ``$AMB_URL``, else ``memory://``).
Payloads on the command line are JSON when they parse as JSON and strings otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from .bus import MessageBus
from .errors import AMBError
from .message import Message
from .plugins import registries
from .urls import redact_url

__all__ = ["main"]


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _headers(pairs: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"amb: --header takes NAME=VALUE, not {pair!r}")
        headers[name] = value
    return headers


def message_json(message: Message) -> str:
    """One line of JSON for a message, as ``amb sub`` prints it."""
    payload = message.payload
    if isinstance(payload, bytes):
        payload = {"$bytes": payload.decode("utf-8", "backslashreplace")}
    record = {
        "topic": message.topic,
        "payload": payload,
        "headers": dict(message.headers),
        "id": message.id,
        "attempt": message.attempt,
    }
    for name in ("correlation_id", "sender", "key", "ttl"):
        value = getattr(message, name)
        if value is not None:
            record[name] = value
    return json.dumps(record, ensure_ascii=False)


def _bus(args: argparse.Namespace) -> MessageBus:
    return MessageBus.from_url(args.url, name="amb-cli")


def _loop(url: str) -> str:
    """trio when the transport supports it and AMB_LOOP asks for it; asyncio otherwise."""
    return os.environ.get("AMB_LOOP", "asyncio")


async def cmd_backends(args: argparse.Namespace) -> int:
    entries = registries().transports.entries
    for scheme, entry in sorted(entries.items()):
        factory = entry.factory
        caps = getattr(factory, "capabilities", None)
        modes = getattr(factory, "capabilities_by_mode", None) or {"": caps}
        loops = ",".join(sorted(getattr(factory, "event_loops", ())))
        for mode, mode_caps in modes.items():
            names = ",".join(mode_caps.names()) if mode_caps is not None else "?"
            label = f"{scheme}" + (f" (mode={mode})" if mode else "")
            print(f"{label:28} {entry.distribution} {entry.version:8} loops={loops:12} {names}")
    return 0


async def cmd_pub(args: argparse.Namespace) -> int:
    async with _bus(args) as bus:
        for _ in range(args.count):
            message = await bus.publish(
                args.topic,
                _payload(args.payload),
                headers=_headers(args.header),
                key=args.key,
                ttl=args.ttl,
            )
            print(message.id)
    return 0


async def cmd_sub(args: argparse.Namespace) -> int:
    received = 0
    done = anyio.Event()

    async def show(message: Message) -> None:
        nonlocal received
        print(message_json(message), flush=True)
        received += 1
        if args.count and received >= args.count:
            done.set()

    async with _bus(args) as bus:
        await bus.subscribe(args.pattern, show, group=args.group)
        print(
            f"# listening on {args.pattern} at {redact_url(args.url)}", file=sys.stderr, flush=True
        )
        with anyio.move_on_after(args.timeout):
            await done.wait()
    return 0 if not args.count or received >= args.count else 1


async def cmd_request(args: argparse.Namespace) -> int:
    async with _bus(args) as bus:
        reply = await bus.request(
            args.topic, _payload(args.payload), timeout=args.timeout, headers=_headers(args.header)
        )
        print(message_json(reply))
    return 0


async def cmd_dlq(args: argparse.Namespace) -> int:
    async with _bus(args) as bus:
        if args.action == "list":
            for message in await bus.dead_letters.list(
                args.pattern, limit=args.limit, idle=args.idle
            ):
                print(message_json(message))
        else:
            count = await bus.dead_letters.replay(args.pattern, limit=args.limit, idle=args.idle)
            print(f"replayed {count} dead letter(s)")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    await run_demo(args.url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amb", description="AMB, the Agent Message Bus")
    default_url = os.environ.get("AMB_URL", "memory://")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument(
            "--url", default=default_url, help="broker URL (default: $AMB_URL or memory://)"
        )
        return sub

    command("backends", "list the installed transports and their capabilities", cmd_backends)
    pub = command("pub", "publish a message", cmd_pub)
    pub.add_argument("topic")
    pub.add_argument("payload", nargs="?", help="JSON, or a plain string")
    pub.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    pub.add_argument("--key")
    pub.add_argument("--ttl", type=float)
    pub.add_argument("--count", type=int, default=1, help="publish it this many times")
    sub = command("sub", "print messages as they arrive", cmd_sub)
    sub.add_argument("pattern")
    sub.add_argument("--group")
    sub.add_argument("--count", type=int, default=0, help="exit after this many (0: never)")
    sub.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")
    req = command("request", "send a request and print the reply", cmd_request)
    req.add_argument("topic")
    req.add_argument("payload", nargs="?")
    req.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    req.add_argument("--timeout", type=float, default=30.0)
    dlq = command("dlq", "list or replay dead letters", cmd_dlq)
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("pattern", nargs="?", default=">", help="original topics (default: all)")
    dlq.add_argument("--limit", type=int, default=None)
    dlq.add_argument("--idle", type=float, default=1.0, help="stop after this long without one")
    command("demo", "run a small multi-agent scene and narrate it", cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``amb`` command."""
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) == "dlq" and args.limit is None and args.action == "list":
        args.limit = 100
    try:
        result: int = anyio.run(args.handler, args, backend=_loop(args.url))
        return result
    except AMBError as exc:
        print(f"amb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
