"""``amb run`` without a broker: loading the target, the probes, the log format, the signals."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amb_core import ConfigurationError, MessageBus
from amb_core.health import answer
from amb_core.logformat import JSONFormatter
from amb_core.runner import load_target, resolve_bus
from tests.runner_cases import free_port, probe, wait_for

APP = """
from amb_core import MessageBus

bus = MessageBus(name="svc")


@bus.subscribe("jobs.*", group="workers")
async def work(message):
    return None


def factory():
    return bus


async def async_factory():
    return bus


not_a_bus = 42
"""


def start(app: Path, *args: str) -> subprocess.Popen[str]:
    """``amb run runapp_module:bus`` with ``args``, in the app's folder."""
    return subprocess.Popen(
        [sys.executable, "-m", "amb_core.cli", "run", "runapp_module:bus", *args],
        cwd=app,
        env={**os.environ, "PYTHONPATH": str(app)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "runapp_module.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.anyio
async def test_the_target_is_a_bus_or_a_factory_of_one(app: Path) -> None:
    bus = load_target("runapp_module:bus")
    assert isinstance(bus, MessageBus)
    assert await resolve_bus(load_target("runapp_module:factory")) is bus
    assert await resolve_bus(load_target("runapp_module:async_factory")) is bus
    with pytest.raises(ConfigurationError, match="neither a MessageBus"):
        await resolve_bus(load_target("runapp_module:not_a_bus"))
    with pytest.raises(ConfigurationError, match="MODULE:ATTRIBUTE"):
        load_target("runapp_module")
    with pytest.raises(ConfigurationError, match="cannot import"):
        load_target("no_such_module_here:bus")
    with pytest.raises(ConfigurationError, match="no attribute"):
        load_target("runapp_module:missing")


def test_probe_answers() -> None:
    def ready() -> bool:
        return False

    def live() -> bool:
        return True

    assert answer("GET /ready HTTP/1.1", ready, live).startswith(b"HTTP/1.0 503")
    assert answer("GET /livez HTTP/1.1", ready, live).startswith(b"HTTP/1.0 200")
    assert answer("GET /other HTTP/1.1", ready, live).startswith(b"HTTP/1.0 404")
    assert answer("POST /ready HTTP/1.1", ready, live).startswith(b"HTTP/1.0 405")
    assert answer("garbage", ready, live).startswith(b"HTTP/1.0 405")
    assert answer("GET /live HTTP/1.1", ready, live).endswith(b'{"live": true}')


def test_json_log_lines() -> None:
    record = logging.makeLogRecord(
        {
            "name": "amb.run",
            "levelname": "INFO",
            "msg": "serving %d",
            "args": (3,),
            "trace_id": "ab",
        }
    )
    line = json.loads(JSONFormatter().format(record))
    assert line["message"] == "serving 3" and line["logger"] == "amb.run"
    assert line["trace_id"] == "ab" and line["level"] == "INFO"


def test_run_serves_probes_and_stops_on_sigterm(app: Path) -> None:
    port = free_port()
    runner = start(app, "--health-port", str(port), "--log-format", "json")
    try:
        wait_for(lambda: probe(port, "/ready") == 200, 30, "readiness", runner)
        assert probe(port, "/live") == 200
        runner.send_signal(signal.SIGTERM)
        out, _ = runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, out
    messages = [json.loads(line)["message"] for line in out.splitlines() if line.startswith("{")]
    assert any(m.startswith("serving 1 subscriptions (jobs.*)") for m in messages), out
    assert "stopped" in messages


def test_run_with_a_bad_target_exits_2_saying_why(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "amb_core.cli", "run", "nowhere_at_all:bus"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot import 'nowhere_at_all'" in done.stderr


def test_reload_restarts_the_worker_when_a_source_file_changes(app: Path) -> None:
    pytest.importorskip("watchfiles")  # a development extra; the core's test sessions install it
    from tests.runner_cases import _children

    port = free_port()
    runner = start(app, "--reload", "--health-port", str(port))
    try:
        wait_for(lambda: probe(port, "/ready") == 200, 30, "readiness", runner)
        before = _children(runner.pid)
        assert len(before) == 1, before
        source = app / "runapp_module.py"
        source.write_text(source.read_text() + "\n# changed\n")
        wait_for(
            lambda: _children(runner.pid) not in ([], before) and probe(port, "/ready") == 200,
            30,
            "a new worker",
            runner,
        )
        runner.send_signal(signal.SIGTERM)
        out, _ = runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, out
    assert "source file(s) changed: restarting the workers" in out
