"""The ``amb`` command, run as a user runs it (a subprocess of the installed entry point)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from amb_core.cli import main, message_json
from amb_core.message import Message

AMB = shutil.which("amb") or ""


def amb(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [AMB] if AMB else [sys.executable, "-m", "amb_core.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)


def test_backends_lists_memory_with_capabilities() -> None:
    done = amb("backends")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("memory"))
    assert "agent-message-bus" in line and "consumer_groups" in line and "asyncio,trio" in line


def test_demo_narrates_the_scene() -> None:
    done = amb("demo")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "the oracle answered {'answer': 42}" in out
    assert "reason=unroutable" in out and "reason=max_attempts attempts=3" in out
    assert "3 tasks done by the group, 2 parked in the dead letters" in out
    assert out.count("got analyze task 'poison'") == 3
    assert "streamed 16 tokens: Once upon a time" in out
    assert "gathered 3 quotes" in out and "takes pricing-b at 95 EUR" in out


def test_pub_prints_the_id_and_bad_input_is_a_clear_error() -> None:
    done = amb("pub", "agents.x", '{"a": 1}', "--header", "k=v", "--count", "2")
    assert done.returncode == 0 and len(done.stdout.split()) == 2
    bad = amb("pub", "agents.*", "1")
    assert bad.returncode == 2 and "InvalidTopicError" in bad.stderr
    unknown = amb("pub", "a.b", "1", "--url", "redis://user:pw@localhost:1")
    if unknown.returncode == 2 and "UnknownSchemeError" in unknown.stderr:
        assert "agent-message-bus[redis]" in unknown.stderr
    assert "pw@" not in unknown.stderr + unknown.stdout
    header = amb("pub", "a.b", "1", "--header", "novalue")
    assert header.returncode == 2 and "NAME=VALUE" in header.stderr


def test_version() -> None:
    done = amb("--version")
    assert (
        done.returncode == 0
        and done.stdout.startswith("amb 0.")
        and "agent-message-bus" in done.stdout
    )


def test_payloads_are_json_unless_text_is_asked_for() -> None:
    bad = amb("pub", "a.b", "{bad json")
    assert bad.returncode == 2 and "not JSON" in bad.stderr and "--text" in bad.stderr
    assert amb("pub", "a.b", "{bad json", "--text").returncode == 0
    assert amb("request", "a.b", "{nope", "--timeout", "0.1").returncode == 2


def test_payload_forms() -> None:
    from amb_core.cli import _payload, build_parser

    def parsed(*argv: str) -> object:
        return _payload(build_parser().parse_args(["pub", "t", *argv]))

    assert parsed() == {}
    assert parsed('{"a": [1]}') == {"a": [1]}
    assert parsed("hello world", "--text") == "hello world"
    assert parsed("42", "--text") == "42"
    assert parsed("42") == 42


def test_memory_url_warns_that_it_lives_in_one_process() -> None:
    done = amb("pub", "a.b", "1", "--url", "memory://")
    assert done.returncode == 0 and "lives in this process only" in done.stderr


def test_a_url_without_scheme_says_so() -> None:
    done = amb("pub", "a.b", "1", "--url", "localhost:6379")
    assert done.returncode == 2 and "has no scheme" in done.stderr and "redis://" in done.stderr


def test_backends_with_a_url_shows_that_transports_capabilities() -> None:
    done = amb("backends", "--url", "memory://")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MemoryTransport") and "consumer_groups" in done.stdout


def test_reply_answers_requests_in_process() -> None:
    """``amb reply`` and ``amb request`` on one in-process bus: the command's handler answers."""
    import anyio

    from amb_core.cli import cmd_reply

    async def scenario() -> None:
        from amb_core import MemoryHub, MessageBus

        MemoryHub.named("cli-reply-test")
        args = build_args("reply", "svc.echo", "--count", "1", "--timeout", "5")
        args.url = "memory://cli-reply-test"
        async with anyio.create_task_group() as tg:
            tg.start_soon(cmd_reply, args)
            async with MessageBus.from_url("memory://cli-reply-test") as bus:
                with anyio.fail_after(5):
                    while True:
                        try:
                            reply = await bus.request("svc.echo", {"n": 1}, timeout=0.2)
                            break
                        except TimeoutError:
                            continue
        assert reply.payload == {"n": 1}

    anyio.run(scenario)


def build_args(*argv: str):  # type: ignore[no-untyped-def]
    from amb_core.cli import build_parser

    args = build_parser().parse_args(list(argv))
    args.url_given = False
    return args


def test_request_timeout_exits_with_a_typed_error() -> None:
    done = amb("request", "nobody.home", '"hi"', "--timeout", "0.2")
    assert done.returncode == 2
    assert "RequestTimeoutError" in done.stderr and "nobody.home" in done.stderr


def test_sub_gives_up_after_its_timeout_when_too_few_arrive() -> None:
    done = amb("sub", "quiet.>", "--count", "1", "--timeout", "0.2")
    assert done.returncode == 1 and "listening on quiet.>" in done.stderr


def test_dlq_list_on_an_empty_bus() -> None:
    done = amb("dlq", "list", "--idle", "0.1")
    assert done.returncode == 0 and done.stdout == ""


def test_message_json_is_one_line_of_json() -> None:
    line = message_json(Message("t.x", b"\xff\x00", {"h": "v"}, key="k"))
    record = json.loads(line)
    assert record["topic"] == "t.x" and record["payload"] == {"$bytes": "\\xff\x00"}
    assert record["key"] == "k" and "\n" not in line


def test_main_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([])
    assert "usage" in capsys.readouterr().err


def test_dlq_list_marks_replayed_letters_and_replay_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``amb dlq list`` says which letters were replayed; ``replay`` replays each once and stops at
    letters newer than itself (the replayed messages fail again here); ``--again`` replays every
    retained letter once more. In process, on a named memory hub the commands share."""
    import anyio

    from amb_core import MessageBus, RetryPolicy
    from amb_core.cli import cmd_dlq

    url = "memory://cli-dlq-test"

    def args(*argv: str):  # type: ignore[no-untyped-def]
        parsed = build_args("dlq", argv[0], "orders.>", *argv[1:], "--idle", "0.2")
        parsed.url, parsed.limit = url, 100 if argv[0] == "list" else None
        return parsed

    async def letters(bus: MessageBus, count: int) -> None:
        for _ in range(100):
            if len(await bus.dead_letters.list("orders.>", idle=0.05)) >= count:
                return
        pytest.fail(f"fewer than {count} dead letters")

    async def scenario() -> None:
        async with MessageBus.from_url(url, retry=RetryPolicy(max_attempts=1)) as bus:
            await bus.subscribe("orders.x", lambda m: 1 / 0)  # fails, every time
            for n in range(2):
                await bus.publish("orders.x", n)
            await letters(bus, 2)
            capsys.readouterr()
            await cmd_dlq(args("replay"))
            assert capsys.readouterr().out.strip() == "replayed 2 dead letter(s)"
            await letters(bus, 4)
            await cmd_dlq(args("list"))
            listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert sorted(r["payload"] for r in listed) == [0, 0, 1, 1]
            assert [r["replayed"] for r in listed] == [True, True, False, False]
            await cmd_dlq(args("replay", "--again"))
            assert capsys.readouterr().out.strip() == "replayed 4 dead letter(s)"

    anyio.run(scenario)


def test_request_stream_prints_each_chunk_and_reply_stream_answers_in_chunks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``amb reply --stream`` answers in words; ``amb request --stream`` prints each chunk."""
    import anyio

    from amb_core import MemoryHub
    from amb_core.cli import cmd_reply, cmd_request

    async def scenario() -> None:
        MemoryHub.named("cli-stream-test")
        serve = build_args("reply", "svc.words", "--stream", "--count", "1", "--timeout", "5")
        serve.url = "memory://cli-stream-test"
        ask = build_args("request", "svc.words", '"three little words"', "--stream")
        ask.url = "memory://cli-stream-test"
        async with anyio.create_task_group() as tg:
            tg.start_soon(cmd_reply, serve)
            await anyio.sleep(0.2)  # the responder subscribes (same process, same hub)
            assert await cmd_request(ask) == 0

    anyio.run(scenario)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    chunks = [line for line in lines if "seq" in line]
    assert [c["payload"] for c in chunks] == ["three", "little", "words"]
    assert [c["seq"] for c in chunks] == ["1", "2", "3"]


def test_gather_prints_every_reply_and_exits_1_without_any(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import anyio

    from amb_core import MemoryHub, MemoryTransport, MessageBus
    from amb_core.cli import cmd_gather

    async def scenario() -> tuple[int, int]:
        hub = MemoryHub.named("cli-gather-test")
        async with (
            MessageBus(MemoryTransport(hub), name="one") as one,
            MessageBus(MemoryTransport(hub), name="two") as two,
        ):
            await one.subscribe("svc.vote", lambda m: "yes")
            await two.subscribe("svc.vote", lambda m: "no")
            ask = build_args("gather", "svc.vote", "--timeout", "0.5")
            ask.url = "memory://cli-gather-test"
            nobody = build_args("gather", "svc.nobody", "--timeout", "0.2")
            nobody.url = "memory://cli-gather-test"
            return await cmd_gather(ask), await cmd_gather(nobody)

    assert anyio.run(scenario) == (0, 1)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((line["sender"], line["payload"]) for line in lines) == [
        ("one", "yes"),
        ("two", "no"),
    ]
