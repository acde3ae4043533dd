"""``amb run`` against a real broker, as an operator runs it: a subprocess serving an app module,
stopped with SIGTERM while a handler is in flight.

Each backend's test folder calls :func:`check_graceful_stop` with its broker's URL. The app's
handler (a consumer group) appends ``start <n>`` and ``done <n>`` to a journal file, flushed, and
takes ``HANDLER_SECONDS`` per message. What is checked:

1. a SIGTERM while a handler runs lets it finish within ``--grace`` and exits 0;
2. a second runner (the same group) handles what is left: every message done, none twice, so
   nothing is lost and nothing that finished is handled again;
3. with a grace shorter than the handler, the unfinished message is given back and a third runner
   handles it (``done`` exactly once).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import anyio

from amb_core import MessageBus

HANDLER_SECONDS = 1.0

APP = """
import os, time
import anyio
from amb_core import MessageBus

bus = MessageBus.from_url(os.environ["AMB_URL"], name="runner-test")
JOURNAL = os.environ["APP_JOURNAL"]


def note(text):
    with open(JOURNAL, "a") as journal:
        journal.write(text + "\\n")
        journal.flush()


@bus.subscribe(os.environ["APP_TOPIC"], group="workers")
async def work(message):
    note(f"start {message.payload}")
    await anyio.sleep(float(os.environ["APP_SECONDS"]))
    note(f"done {message.payload}")
"""


def start_runner(
    tmp_path: Path, url: str, topic: str, *args: str, seconds: float = HANDLER_SECONDS
) -> subprocess.Popen[str]:
    """``amb run app:bus`` in ``tmp_path`` on ``url``."""
    (tmp_path / "app.py").write_text(APP)
    env = {
        **os.environ,
        "AMB_URL": url,
        "APP_JOURNAL": str(tmp_path / "journal"),
        "APP_TOPIC": topic,
        "APP_SECONDS": str(seconds),
        "PYTHONPATH": str(tmp_path),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "amb_core.cli", "run", "app:bus", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def probe(port: int, path: str) -> int | None:
    """The status of ``GET path`` on the runner's health port, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def journal(tmp_path: Path) -> list[str]:
    path = tmp_path / "journal"
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate: object, timeout: float, what: str, runner: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if runner.poll() is not None:
            raise AssertionError(f"the runner exited early ({runner.returncode}): {runner.stdout}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(runner: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    runner.send_signal(signal.SIGTERM)
    try:
        out, _ = runner.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        runner.kill()
        out, _ = runner.communicate()
        raise AssertionError(f"the runner did not stop within {timeout}s:\n{out}") from None
    return runner.returncode, out


async def publish(url: str, topic: str, payloads: list[int]) -> None:
    async with MessageBus.from_url(url) as bus:
        for payload in payloads:
            await bus.publish(topic, payload)


def check_graceful_stop(url: str, tmp_path: Path, *, settle: float = 60.0) -> None:
    """The whole scenario of the module docstring; ``settle`` bounds each wait for handling."""
    topic = f"runner{uuid.uuid4().hex[:8]}.jobs"
    port = free_port()
    first = start_runner(tmp_path, url, topic, "--grace", "10", "--health-port", str(port))
    try:
        wait_for(lambda: probe(port, "/ready") == 200, settle, "readiness", first)
        anyio.run(publish, url, topic, [1, 2, 3])
        wait_for(
            lambda: any(line.startswith("start") for line in journal(tmp_path)),
            settle,
            "the first handler to start",
            first,
        )
        code, out = stop(first, timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 0, out
    started = [line for line in journal(tmp_path) if line.startswith("start")]
    done = [line for line in journal(tmp_path) if line.startswith("done")]
    assert len(done) == len(started) >= 1, f"the handler in flight finished: {journal(tmp_path)}"

    second = start_runner(tmp_path, url, topic, "--grace", "10")
    try:
        wait_for(
            lambda: (
                {line for line in journal(tmp_path) if line.startswith("done")}
                >= {"done 1", "done 2", "done 3"}
            ),
            settle,
            "the second runner to handle the rest",
            second,
        )
        code, out = stop(second, timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    assert code == 0, out
    counts = Counter(line for line in journal(tmp_path) if line.startswith("done"))
    assert counts == Counter({"done 1": 1, "done 2": 1, "done 3": 1}), journal(tmp_path)

    # A grace shorter than the handler: the unfinished message goes back to the broker.
    slow_topic = f"runner{uuid.uuid4().hex[:8]}.slow"
    port = free_port()
    third = start_runner(
        tmp_path, url, slow_topic, "--grace", "0.2", "--health-port", str(port), seconds=5.0
    )
    try:
        wait_for(lambda: probe(port, "/ready") == 200, settle, "readiness", third)
        anyio.run(publish, url, slow_topic, [9])
        wait_for(lambda: "start 9" in journal(tmp_path), settle, "the slow handler", third)
        started_at = time.monotonic()
        code, out = stop(third, timeout=30)
        assert time.monotonic() - started_at < 4.0, "the grace bounds the drain"
    finally:
        if third.poll() is None:
            third.kill()
    assert code == 0, out
    assert "done 9" not in journal(tmp_path)
    fourth = start_runner(tmp_path, url, slow_topic, "--grace", "10", seconds=0.1)
    try:
        wait_for(lambda: "done 9" in journal(tmp_path), settle, "the redelivery", fourth)
        code, out = stop(fourth, timeout=30)
    finally:
        if fourth.poll() is None:
            fourth.kill()
    assert code == 0, out
    assert journal(tmp_path).count("done 9") == 1


def check_second_signal(url: str, tmp_path: Path) -> None:
    """A second SIGTERM while handlers drain stops at once, with exit code 130."""
    topic = f"runner{uuid.uuid4().hex[:8]}.hard"
    port = free_port()
    runner = start_runner(
        tmp_path, url, topic, "--grace", "30", "--health-port", str(port), seconds=20.0
    )
    try:
        wait_for(lambda: probe(port, "/ready") == 200, 60, "readiness", runner)
        anyio.run(publish, url, topic, [7])
        wait_for(lambda: "start 7" in journal(tmp_path), 60, "the handler", runner)
        runner.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert runner.poll() is None, "the first signal drains: the handler has 30 s"
        started = time.monotonic()
        code, out = stop(runner, timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if runner.poll() is None:
            runner.kill()
    assert code == 130, out
    assert "done 7" not in journal(tmp_path)


def check_workers(url: str, tmp_path: Path) -> None:
    """``--workers 2``: the group's messages are shared; a worker killed with SIGKILL is started
    again; the supervisor answers the probes for all; one SIGTERM stops every worker, exit 0."""
    topic = f"runner{uuid.uuid4().hex[:8]}.pool"
    port = free_port()
    runner = start_runner(
        tmp_path, url, topic, "--workers", "2", "--health-port", str(port), seconds=0.05
    )
    try:
        wait_for(lambda: probe(port, "/ready") == 200, 60, "both workers ready", runner)
        assert probe(port, "/live") == 200
        anyio.run(publish, url, topic, list(range(20)))
        wait_for(
            lambda: sum(line.startswith("done") for line in journal(tmp_path)) >= 20,
            60,
            "the pool to handle 20 messages",
            runner,
        )
        workers = _children(runner.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: probe(port, "/ready") != 200, 10, "readiness to drop", runner)
        wait_for(lambda: probe(port, "/ready") == 200, 60, "the worker to be restarted", runner)
        assert workers[0] not in _children(runner.pid)
        code, out = stop(runner, timeout=40)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert code == 0, out
    assert _children(runner.pid) == []
    counts = Counter(line for line in journal(tmp_path) if line.startswith("done"))
    assert set(counts) == {f"done {n}" for n in range(20)}


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)
