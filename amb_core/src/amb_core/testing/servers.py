"""Throwaway broker processes for tests and benchmarks.

Every backend's fixtures start their server the same way: on a free 127.0.0.1 port, in its own
process session, waiting until it answers a real protocol request (not just until the port opens),
killed by PID at exit even when the test run is interrupted. Under ``CI=true`` a server that cannot
be had fails the run; locally it skips.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

__all__ = [
    "ServerProcess",
    "find_binary",
    "free_port",
    "in_ci",
    "listening_ports",
    "skip_or_fail",
    "wait_tcp",
]

_live: set[ServerProcess] = set()


def in_ci() -> bool:
    """True when ``CI`` is set to a true value: missing brokers then fail instead of skipping."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test locally; fail it under CI, where every broker must be there."""
    import pytest

    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing broker fails the run)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening_ports(count: int, *offsets: int) -> list[int]:
    """``count`` free ports (and ``port + offset`` free too for each of ``offsets``, as a Redis
    Cluster node's bus port), below Linux's ephemeral range, for servers that others dial before
    they listen: the nodes of a cluster each connect to the others as they start. A
    :func:`free_port` is an ephemeral port, so a node's outgoing connection to a peer not yet up
    could take a later node's port first ("address already in use": seen with NATS routes). No
    port, offset ports included, is chosen twice: nothing listens on them until the nodes start.

    :raises RuntimeError: when no such ports are found.
    """
    chosen: list[int] = []
    taken: set[int] = set()
    tries = 500 * count
    while len(chosen) < count:
        tries -= 1
        if tries < 0:
            raise RuntimeError("no free ports below the ephemeral range")
        port = random.randint(12000, 22700)
        wanted = [port + offset for offset in (0, *offsets)]
        if taken.intersection(wanted):
            continue
        try:
            for p in wanted:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", p))
        except OSError:
            continue
        chosen.append(port)
        taken.update(wanted)
    return chosen


def wait_tcp(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once ``host:port`` accepts a TCP connection, False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def find_binary(name: str, *candidates: str | Path) -> str | None:
    """The first of ``candidates`` that exists, then ``name`` next to this Python, then on PATH."""
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


class ServerProcess:
    """A broker process owned by a test run.

    :param argv: the command; ``{port}`` and ``{dir}`` in it are replaced by the port and a fresh
        temporary directory.
    :param ready: called with the port until it returns True (a real protocol exchange).
    :param port: the port to use (default: a free one). Reused by :meth:`restart`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        ready: Callable[[int], bool],
        *,
        port: int | None = None,
        startup_timeout: float = 20.0,
        name: str = "server",
    ) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix=f"amb-{name}-")
        self.argv = [a.format(port=self.port, dir=self.dir) for a in argv]
        self.ready = ready
        self.startup_timeout = startup_timeout
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self.dir) / f"{name}.log"

    def start(self) -> ServerProcess:
        """Start and wait until ready.

        :raises RuntimeError: when it exits or is not ready in time (its log is in the message).
        """
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _live.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.ready(self.port):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready on port {self.port}: {tail}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the process (SIGKILL after ``timeout``). Idempotent."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.proc = None
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        """Stop and start again on the same port (and data directory)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        server.stop(signal.SIGKILL)
