"""``amb demo``: a small multi-agent scene, narrated so that a person can follow it.

Every agent has a bus of its own on the same broker, as separate processes would:

- a *planner* publishes tasks to ``<run>.tasks.incoming`` and asks an *oracle* a question;
- a *router* forwards each task by its ``type`` to ``<run>.work.analyze`` or ``<run>.work.summarize``
  (anything else goes to the dead letters as unroutable);
- two *workers* in one consumer group share ``<run>.work.*``, so each task is done once;
- one task is poison: its worker fails on every attempt, the bus retries it with backoff and then
  parks it in ``dlq.<topic>``, where a *watcher* reports it;
- a *writer* streams its answer to the planner token by token (a fake language model);
- the planner gathers quotes from three *pricing* agents at once and takes the cheapest.

Topic names carry a run id so that the scene can run on a shared broker without disturbing it.
"""

from __future__ import annotations

import os
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio

from .bus import MessageBus
from .deadletter import H_DLQ_ATTEMPTS, H_DLQ_ERROR, H_DLQ_REASON, RetryPolicy
from .message import Message
from .routing import Rule

__all__ = ["run_demo"]

TASKS = [
    {"type": "analyze", "data": "sales_q4"},
    {"type": "summarize", "data": "meeting notes"},
    {"type": "analyze", "data": "poison"},
    {"type": "translate", "data": "bonjour"},
    {"type": "summarize", "data": "quarterly report"},
]


async def run_demo(url: str = "memory://", *, out: Any = print) -> dict[str, Any]:
    """Run the scene on ``url``; return what happened (the tests check it)."""
    run = f"demo{os.urandom(3).hex()}"
    if url.rstrip("/") == "memory:":
        url = f"memory://{run}"  # one named in-process hub, shared by the agents' buses
    started = time.monotonic()
    done: list[tuple[str, Any]] = []
    dead: list[Message] = []
    finished = anyio.Event()

    def say(who: str, text: str) -> None:
        out(f"[{time.monotonic() - started:6.3f}s] {who:>10} | {text}")

    retry = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.2)
    async with AsyncExitStack() as stack:

        async def agent(name: str) -> MessageBus:
            return await stack.enter_async_context(MessageBus.from_url(url, name=name, retry=retry))

        planner, router, oracle = (
            await agent("planner"),
            await agent("router"),
            await agent("oracle"),
        )
        workers = [await agent("worker-1"), await agent("worker-2")]
        watcher = await agent("watcher")

        def check_done() -> None:
            if len(done) == 3 and len(dead) == 2:
                finished.set()

        for bus in workers:

            async def work(message: Message, me: str = bus.name or "worker") -> None:
                task = message.payload
                say(
                    me,
                    f"got {message.topic.rsplit('.', 1)[-1]} task {task['data']!r} (attempt {message.attempt})",
                )
                if task["data"] == "poison":
                    raise ValueError("this task poisons every worker")
                await anyio.sleep(0.01)
                done.append((me, task["data"]))
                check_done()

            await bus.subscribe(f"{run}.work.*", work, group="workers")

        async def report(message: Message) -> None:
            headers = message.headers
            say(
                "watcher",
                f"dead letter on {message.topic}: reason={headers.get(H_DLQ_REASON)}"
                f" attempts={headers.get(H_DLQ_ATTEMPTS)} error={headers.get(H_DLQ_ERROR)!r}",
            )
            dead.append(message)
            check_done()

        await watcher.subscribe(f"dlq.{run}.>", report)

        async def answer(message: Message) -> Any:
            say("oracle", f"asked {message.payload['question']!r}")
            return {"answer": 42}

        await oracle.subscribe(f"{run}.oracle.ask", answer)
        await router.route(
            f"{run}.tasks.incoming",
            [
                Rule(to=f"{run}.work.analyze", when={"payload.type": "analyze"}),
                Rule(to=f"{run}.work.summarize", when={"payload.type": "summarize"}),
            ],
            group="routers",
        )
        say("router", "routes analyze -> work.analyze, summarize -> work.summarize, rest -> DLQ")

        reply = await planner.request(
            f"{run}.oracle.ask", {"question": "what is six times seven?"}, timeout=10
        )
        say("planner", f"the oracle answered {reply.payload}")
        story = await _stream_scene(run, planner, await agent("writer"), say)
        quotes = await _gather_scene(
            run, planner, [await agent(f"pricing-{n}") for n in "abc"], say
        )
        for task in TASKS:
            say("planner", f"publishes {task['type']} task {task['data']!r}")
            await planner.publish(f"{run}.tasks.incoming", task)
        with anyio.move_on_after(30):
            await finished.wait()
        say("demo", f"{len(done)} tasks done by the group, {len(dead)} parked in the dead letters")
    return {"done": done, "dead": dead, "reply": reply.payload, "story": story, "quotes": quotes}


STORY = "Once upon a time , six agents shared one bus and nobody lost a message ."


async def _stream_scene(run: str, planner: MessageBus, writer: MessageBus, say: Any) -> list[str]:
    """The writer answers in tokens (an async generator); the planner prints them as they come."""

    async def write(message: Message) -> Any:
        say("writer", f"starts writing about {message.payload['topic']!r}")
        for token in STORY.split():
            await anyio.sleep(0.01)  # as a model would, one token at a time
            yield token

    await writer.subscribe(f"{run}.writer.ask", write)
    tokens: list[str] = []
    async with planner.stream(f"{run}.writer.ask", {"topic": "buses"}, timeout=20) as answer:
        async for chunk in answer:
            tokens.append(chunk.payload)
    say("planner", f"streamed {len(tokens)} tokens: {' '.join(tokens)}")
    return tokens


async def _gather_scene(
    run: str, planner: MessageBus, pricers: list[MessageBus], say: Any
) -> list[tuple[str | None, Any]]:
    """Three pricing agents answer one gather; the planner takes the cheapest."""
    for bus, price in zip(pricers, (120, 95, 110), strict=True):

        async def quote(message: Message, price: int = price) -> Any:
            return {"eur": price}

        await bus.subscribe(f"{run}.pricing.quote", quote)
    replies = await planner.gather(
        f"{run}.pricing.quote", {"trip": "LIS"}, timeout=10, max_replies=len(pricers)
    )
    quotes = sorted((r.sender, r.payload["eur"]) for r in replies)
    best = min(quotes, key=lambda q: q[1])
    say("planner", f"gathered {len(quotes)} quotes {quotes}; takes {best[0]} at {best[1]} EUR")
    return quotes
