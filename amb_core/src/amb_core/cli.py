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
from collections.abc import Callable, Sequence
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


def _chunks(value: Any) -> list[Any]:
    """What ``amb reply --stream`` streams: a list's items, a string's words, or the value."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return value.split()
    return [value]


async def _serve(
    args: argparse.Namespace,
    what: str,
    answer: Callable[[Message], Any],
    *,
    stream: bool = False,
    chunk_delay: float = 0.0,
) -> int:
    """Subscribe ``args.pattern``, print each message as a JSON line and pass it to ``answer``
    (whose return value answers a request; with ``stream``, chunk by chunk), until ``--count``
    messages or ``--timeout``: exit 1 when fewer than ``--count`` came."""
    seen = 0
    done = anyio.Event()

    def count() -> None:
        nonlocal seen
        seen += 1
        if args.count and seen >= args.count:
            done.set()

    async def show(message: Message) -> Any:
        print(message_json(message), flush=True)
        count()
        return answer(message)

    async def show_streaming(message: Message) -> Any:
        print(message_json(message), flush=True)
        for chunk in _chunks(answer(message)):
            yield chunk
            await anyio.sleep(chunk_delay)
        count()  # after the end frame is due: the command stays up until the stream is sent

    async with _bus(args) as bus:
        await bus.subscribe(args.pattern, show_streaming if stream else show, group=args.group)
        print(f"# {what} {args.pattern} at {redact_url(args.url)}", file=sys.stderr, flush=True)
        with anyio.move_on_after(args.timeout):
            await done.wait()
    return 0 if not args.count or seen >= args.count else 1


async def cmd_sub(args: argparse.Namespace) -> int:
    return await _serve(args, "listening on", lambda message: None)


async def cmd_request(args: argparse.Namespace) -> int:
    """One request; with ``--stream``, print each chunk of a streamed reply as it arrives."""
    payload, headers = _payload(args), _headers(args.header)
    async with _bus(args) as bus:
        if not args.stream:
            reply = await bus.request(args.topic, payload, timeout=args.timeout, headers=headers)
            print(message_json(reply))
            return 0
        async with bus.stream(
            args.topic,
            payload,
            timeout=args.timeout,
            idle_timeout=args.idle_timeout,
            window=args.window,
            headers=headers,
        ) as chunks:
            async for chunk in chunks:
                print(message_json(chunk, seq=chunk.headers.get("amb-seq")), flush=True)
    return 0


async def cmd_gather(args: argparse.Namespace) -> int:
    """Ask every responder of a topic; one JSON line per reply as it arrives (exit 1: none)."""
    payload, headers = _payload(args), _headers(args.header)
    replies = 0
    async with _bus(args) as bus:
        gather = bus.gather(
            args.topic,
            payload,
            timeout=args.timeout,
            max_replies=args.max_replies,
            headers=headers,
        )
        async for reply in gather:
            replies += 1
            print(message_json(reply), flush=True)
        for failure in gather.failures:
            print(f"# a responder failed: {failure}", file=sys.stderr)
    print(f"# {replies} replies", file=sys.stderr)
    return 0 if replies else 1


async def cmd_reply(args: argparse.Namespace) -> int:
    """Answer requests on a pattern: with the request's own payload (the default) or a fixed
    payload; prints each request as ``amb sub`` does."""
    fixed = None if args.payload is None and not args.text else _payload(args)
    return await _serve(
        args,
        "streaming answers on" if args.stream else "answering requests on",
        lambda message: message.payload if fixed is None else fixed,
        stream=args.stream,
        chunk_delay=args.chunk_delay,
    )


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


async def cmd_run(args: argparse.Namespace) -> int:
    """Serve a module's bus (``amb run pkg.mod:bus``); see :mod:`amb_core.runner`."""
    from pathlib import Path

    from .logformat import configure_logging

    configure_logging(args.log_level, args.log_format)
    if args.url_given:
        os.environ["AMB_URL"] = args.url  # for a module that reads it
    if args.workers > 1 or args.reload:
        from .supervisor import supervise

        worker_argv = [
            args.target,
            "--log-level",
            args.log_level,
            "--log-format",
            args.log_format,
        ]
        return await supervise(
            worker_argv,
            args.workers,
            grace=args.grace,
            health_port=args.health_port,
            health_host=args.health_host,
            reload_dirs=[os.getcwd()] if args.reload else (),
        )
    from .runner import run_service

    return await run_service(
        args.target,
        grace=args.grace,
        health_port=args.health_port,
        health_host=args.health_host,
        ready_file=Path(args.ready_file) if args.ready_file else None,
    )


async def cmd_docs(args: argparse.Namespace) -> int:
    """Write the AsyncAPI 3.0 document of a module's bus (JSON, or YAML with ``--yaml``)."""
    from .asyncapi import asyncapi_document
    from .runner import load_target, resolve_bus

    if args.url_given:
        os.environ["AMB_URL"] = args.url
    bus = await resolve_bus(load_target(args.target))
    document = asyncapi_document(
        bus, title=args.title, version=args.app_version, url=args.url if args.url_given else None
    )
    if args.yaml:
        try:
            import yaml  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise UsageError("--yaml needs PyYAML: pip install pyyaml") from None
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        await anyio.Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
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
    req.add_argument("--stream", action="store_true", help="ask for a streamed reply")
    req.add_argument("--idle-timeout", type=float, default=None, help="with --stream")
    req.add_argument("--window", type=int, default=64, help="with --stream: chunks of credit")
    gat = command("gather", "ask every responder of a topic and print each reply", cmd_gather)
    gat.add_argument("topic")
    _add_payload(gat, "JSON (default {}); with --text, any string")
    gat.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    gat.add_argument("--timeout", type=float, default=2.0, help="seconds to collect replies")
    gat.add_argument("--max-replies", type=int, default=None, help="stop after this many")
    rep = command("reply", "answer requests: echo each payload, or answer a fixed one", cmd_reply)
    rep.add_argument("pattern")
    _add_payload(rep, "the answer, JSON (default: echo the request's payload)")
    rep.add_argument("--group", help="share the requests with other responders of this group")
    rep.add_argument("--count", type=int, default=0, help="exit after this many (0: never)")
    rep.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")
    rep.add_argument(
        "--stream",
        action="store_true",
        help="answer in chunks: a list's items, a string's words, else the value",
    )
    rep.add_argument("--chunk-delay", type=float, default=0.0, help="with --stream: seconds")
    dlq = command("dlq", "list or replay dead letters", cmd_dlq)
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("pattern", nargs="?", default=">", help="original topics (default: all)")
    dlq.add_argument("--limit", type=int, default=None)
    dlq.add_argument("--idle", type=float, default=1.0, help="stop after this long without one")
    dlq.add_argument(
        "--again", action="store_true", help="replay: also the letters replayed before"
    )
    command("demo", "run a small multi-agent scene and narrate it", cmd_demo)
    run = command("run", "serve a module's bus until SIGTERM/SIGINT (pkg.module:bus)", cmd_run)
    run.add_argument("target", help="MODULE:ATTRIBUTE, a MessageBus or a factory of one")
    run.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds handlers in flight get to finish after the first signal (default 30)",
    )
    run.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    run.add_argument("--reload", action="store_true", help="restart on source changes (dev)")
    run.add_argument("--health-port", type=int, default=None, help="serve /ready and /live")
    run.add_argument("--health-host", default="0.0.0.0", help="address of the probes")
    run.add_argument("--log-level", default="INFO")
    run.add_argument("--log-format", choices=("plain", "json"), default="plain")
    run.add_argument("--ready-file", default=None, help=argparse.SUPPRESS)  # set by --workers
    docs = command("docs", "write the AsyncAPI 3.0 document of a module's bus", cmd_docs)
    docs.add_argument("target", help="MODULE:ATTRIBUTE, a MessageBus or a factory of one")
    docs.add_argument("--yaml", action="store_true", help="YAML instead of JSON (needs PyYAML)")
    docs.add_argument("--output", "-o", default=None, help="write to this file")
    docs.add_argument("--title", default=None)
    docs.add_argument("--app-version", default="1.0.0", help="the app's version in the document")
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
