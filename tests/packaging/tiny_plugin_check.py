"""Run in a fresh venv holding agent-message-bus and the example plugin (amb-tiny-example), both
installed from wheels: proves that each hook of the plugin took effect through its entry point.

One ``prove_<hook>`` function per hook of :mod:`amb_core.hookspecs` (tests/core/test_plugins.py
checks that there is one for each); each prints ``proved <hook>`` when its check passed, and the
packaging test compares what was proved with the hooks the installed core defines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio
from amb_tiny import plugin
from amb_tiny.transport import TinyTransport

from amb_core import Message, MessageBus, RejectMessage
from amb_core.plugins import get_plugin_manager


async def until(done: Callable[[], Any], what: str) -> None:
    """Poll ``done`` (lists the handlers fill; pytest's helpers are not installed here)."""
    with anyio.fail_after(10):
        while not done():  # noqa: ASYNC110
            await anyio.sleep(0.01)
    print(f"# {what}")


async def prove_amb_register_transports(bus: MessageBus) -> None:
    assert type(bus.transport) is TinyTransport, bus.transport
    got: list[Message] = []
    await bus.subscribe("pkg.hello", got.append)
    await bus.publish("pkg.hello", {"ok": True})
    await until(lambda: [m.payload for m in got] == [{"ok": True}], "a round trip over tiny://")


async def prove_amb_register_routers(bus: MessageBus) -> None:
    urgent: list[Message] = []
    normal: list[Message] = []
    await bus.subscribe("triage.urgent", urgent.append)
    await bus.subscribe("triage.normal", normal.append)
    await bus.route("pkg.work", "tiny-triage")  # the plugin's named rule set
    await bus.publish("pkg.work", {"priority": 9})
    await bus.publish("pkg.work", {"priority": 2})
    await until(lambda: len(urgent) == 1 and len(normal) == 1, "routed by the plugin's rules")
    assert urgent[0].payload == {"priority": 9} and normal[0].payload == {"priority": 2}


async def prove_amb_register_dead_letter_handlers(bus: MessageBus) -> None:
    async def refuse(message: Message) -> None:
        raise RejectMessage("refused on purpose")

    await bus.subscribe("pkg.refused", refuse)
    sent = await bus.publish("pkg.refused", "unwanted")
    await until(lambda: sent.id in plugin.DEAD_LETTERS, "the letter in the plugin's handler")
    dead = plugin.DEAD_LETTERS[sent.id]
    assert (dead.reason, dead.error, dead.message.payload) == (
        "rejected",
        "refused on purpose",
        "unwanted",
    )


async def prove_amb_register_middleware(bus: MessageBus) -> None:
    assert [type(layer) for layer in bus.middleware] == [plugin.Witness], bus.middleware
    got: list[Message] = []
    await bus.subscribe("pkg.watched", got.append)
    await bus.publish("pkg.watched", 1)
    await until(lambda: got, "the watched message")
    assert ("publish", "pkg.watched") in plugin.SEEN, plugin.SEEN
    assert ("receive", "pkg.watched") in plugin.SEEN, plugin.SEEN


async def main() -> None:
    loaded = get_plugin_manager().get_plugin("tiny")  # registered under its entry point's name
    assert loaded is plugin, f"the entry point did not load amb_tiny.plugin: {loaded!r}"
    async with MessageBus.from_url("tiny://packaging") as bus:
        for name, prove in list(globals().items()):
            if name.startswith("prove_"):
                await prove(bus)
                print("proved", name.removeprefix("prove_"), flush=True)


if __name__ == "__main__":
    anyio.run(main)
    sys.exit(0)
