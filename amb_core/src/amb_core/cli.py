"""The ``amb`` command: inspect backends, publish, subscribe, ask and answer, manage dead letters,
run the demo.

Every command that talks to a broker takes ``--url`` (default: ``$AMB_URL``, else ``memory://``,
which lives in one process: the command says so, since another ``amb`` process cannot see it).
Payloads on the command line are JSON; ``--text`` sends the argument as a string instead, and a
missing payload is ``{}``. Usage errors exit with 2, as do AMB's errors; a subscription that got
fewer messages than asked for exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from . import __version__
from .bus import MessageBus
from .errors import AMBError
from .message import Message
from .plugins import registries
from .urls import redact_url, scheme_of

__all__ = ["main"]


class UsageError(Exception):
    """A command line that cannot be carried out as written: exit status 2."""


def _payload(args: argparse.Namespace) -> Any:
    """The payload argument: JSON, or the text itself with ``--text``; ``{}`` when missing."""
    text: str | None = args.payload
    if args.text:
        return "" if text is None else text
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"the payload is not JSON ({exc}): quote a string as JSON ('\"hi\"') or pass --text"
        ) from None


def _headers(pairs: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--header takes NAME=VALUE, not {pair!r}")
        headers[name] = value
    return headers


def message_json(message: Message, **extra: Any) -> str:
    """One line of JSON for a message, as ``amb sub`` prints it (``extra`` fields appended)."""
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
    record.update(extra)
    return json.dumps(record, ensure_ascii=False)


def _bus(args: argparse.Namespace) -> MessageBus:
    if scheme_of(args.url) == "memory":
        print(
            "# note: memory:// lives in this process only; another amb command will not see its "
            "messages. Set AMB_URL or --url to a broker (e.g. redis://localhost:6379).",
            file=sys.stderr,
            flush=True,
        )
    return MessageBus.from_url(args.url, name="amb-cli")


def _loop(url: str) -> str:
    """trio when the transport supports it and AMB_LOOP asks for it; asyncio otherwise."""
    return os.environ.get("AMB_LOOP", "asyncio")


async def cmd_backends(args: argparse.Namespace) -> int:
    """Each installed transport, per mode; with ``--url``, only what that URL's transport declares."""
    if args.url_given:
        transport = MessageBus.from_url(args.url).transport
        entry = registries().transports.get(scheme_of(args.url))
        loops = ",".join(sorted(transport.event_loops))
        names = ",".join(transport.capabilities.names())
        print(f"{transport.description:28} {entry.distribution} loops={loops} {names}")
        return 0
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
    payload, headers = _payload(args), _headers(args.header)
    async with _bus(args) as bus:
        for _ in range(args.count):
            message = await bus.publish(
                args.topic,
                payload,
                headers=headers,
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
    payload, headers = _payload(args), _headers(args.header)
    async with _bus(args) as bus:
        reply = await bus.request(args.topic, payload, timeout=args.timeout, headers=headers)
        print(message_json(reply))
    return 0


async def cmd_reply(args: argparse.Namespace) -> int:
    """Answer requests on a pattern: with the request's own payload (``--echo``, the default) or a
    fixed payload; prints each request as ``amb sub`` does."""
    fixed = None if args.payload is None and not args.text else _payload(args)
    answered = 0
    done = anyio.Event()

    async def answer(message: Message) -> Any:
        nonlocal answered
        print(message_json(message), flush=True)
        answered += 1
        if args.count and answered >= args.count:
            done.set()
        return message.payload if fixed is None else fixed

    async with _bus(args) as bus:
        await bus.subscribe(args.pattern, answer, group=args.group)
        print(
            f"# answering requests on {args.pattern} at {redact_url(args.url)}",
            file=sys.stderr,
            flush=True,
        )
        with anyio.move_on_after(args.timeout):
            await done.wait()
    return 0 if not args.count or answered >= args.count else 1


async def cmd_dlq(args: argparse.Namespace) -> int:
    async with _bus(args) as bus:
        if args.action == "list":
            letters = await bus.dead_letters.list(args.pattern, limit=args.limit, idle=args.idle)
            replayed = await bus.dead_letters.replayed(args.pattern, idle=args.idle)
            if replayed is None and letters:
                print(
                    "# this broker keeps no record of replays: 'replayed' is unknown (null)",
                    file=sys.stderr,
                )
            for message in letters:
                print(
                    message_json(
                        message, replayed=None if replayed is None else message.id in replayed
                    )
                )
        else:
            count = await bus.dead_letters.replay(
                args.pattern, limit=args.limit, idle=args.idle, again=args.again
            )
            print(f"replayed {count} dead letter(s)")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    await run_demo(args.url)
    return 0


def _add_payload(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("payload", nargs="?", help=help_text)
    parser.add_argument("--text", action="store_true", help="send the payload as a plain string")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amb", description="AMB, the Agent Message Bus")
    parser.add_argument(
        "--version", action="version", version=f"amb {__version__} (agent-message-bus)"
    )
    default_url = os.environ.get("AMB_URL", "memory://")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--url", default=None, help="broker URL (default: $AMB_URL or memory://)")
        return sub

    command("backends", "list the installed transports and their capabilities", cmd_backends)
    pub = command("pub", "publish a message", cmd_pub)
    pub.add_argument("topic")
    _add_payload(pub, "JSON (default {}); with --text, any string")
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
    _add_payload(req, "JSON (default {}); with --text, any string")
    req.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    req.add_argument("--timeout", type=float, default=30.0)
    rep = command("reply", "answer requests: echo each payload, or answer a fixed one", cmd_reply)
    rep.add_argument("pattern")
    _add_payload(rep, "the answer, JSON (default: echo the request's payload)")
    rep.add_argument("--group", help="share the requests with other responders of this group")
    rep.add_argument("--count", type=int, default=0, help="exit after this many (0: never)")
    rep.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")
    dlq = command("dlq", "list or replay dead letters", cmd_dlq)
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("pattern", nargs="?", default=">", help="original topics (default: all)")
    dlq.add_argument("--limit", type=int, default=None)
    dlq.add_argument("--idle", type=float, default=1.0, help="stop after this long without one")
    dlq.add_argument(
        "--again", action="store_true", help="replay: also the letters replayed before"
    )
    command("demo", "run a small multi-agent scene and narrate it", cmd_demo)
    parser.set_defaults(default_url=default_url)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``amb`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.url_given = args.url is not None
    if args.url is None:
        args.url = args.default_url
    if getattr(args, "command", None) == "dlq" and args.limit is None and args.action == "list":
        args.limit = 100
    try:
        result: int = anyio.run(args.handler, args, backend=_loop(args.url))
        return result
    except UsageError as exc:
        parser.exit(2, f"amb: {exc}\n")
    except AMBError as exc:
        print(f"amb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
