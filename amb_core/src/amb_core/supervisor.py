"""``amb run --workers N`` (and ``--reload``): several worker processes under one supervisor.

Each worker is ``amb run`` itself, one process with a bus of its own: group subscriptions share the
work among the workers (each message to one of them), while fan-out subscriptions run in every
worker (each gets every message: N workers, N copies), as separate processes on the same broker
would. The supervisor

* starts N workers in sessions of their own (a terminal's Ctrl-C reaches only the supervisor, which
  then stops the workers once, gracefully, instead of every process getting the signal);
* restarts a worker that dies, after a backoff that grows while it keeps dying (0.5 s to 10 s);
* on the first SIGTERM/SIGINT sends SIGTERM to every worker and waits for them to drain (each has
  ``grace`` seconds) and exit; on a second signal kills them and exits 130;
* serves the health probes for all of them (:mod:`.health`): ready when every worker is alive and
  ready (each reports through a file), live while it supervises;
* with ``reload``, restarts the workers gracefully whenever a ``.py`` file under the watched
  directories changes (needs the ``watchfiles`` package: development only).
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from .errors import ConfigurationError
from .runner import HARD_STOP_EXIT

__all__ = ["supervise"]

log = logging.getLogger("amb.run")


class _Worker:
    def __init__(self, index: int, ready_file: Path) -> None:
        self.index = index
        self.ready_file = ready_file
        self.process: anyio.abc.Process | None = None
        self.failures = 0

    def ready(self) -> bool:
        if self.process is None or self.process.returncode is not None:
            return False
        try:
            return self.ready_file.read_text() == "1"
        except OSError:
            return False


async def supervise(
    worker_argv: Sequence[str],
    workers: int,
    *,
    grace: float,
    health_port: int | None = None,
    health_host: str = "0.0.0.0",
    reload_dirs: Sequence[str] = (),
) -> int:
    """Run ``workers`` copies of ``amb run <worker_argv>`` until a signal; the exit code.

    :raises ConfigurationError: when ``reload_dirs`` is given and watchfiles is not installed.
    """
    if workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    watch: Any = None
    if reload_dirs:
        try:  # an optional development dependency, imported only when asked for
            watchfiles = importlib.import_module("watchfiles")
        except ImportError:
            raise ConfigurationError(
                "--reload needs the watchfiles package: pip install watchfiles"
            ) from None
        watch = (watchfiles.awatch, watchfiles.PythonFilter)
    state = tempfile.TemporaryDirectory(prefix="amb-run-")
    pool = [_Worker(i, Path(state.name) / f"worker-{i}.ready") for i in range(workers)]
    stopping = False
    hard = False

    async def start(worker: _Worker) -> None:
        worker.ready_file.write_text("0")
        worker.process = await anyio.open_process(
            [
                sys.executable,
                "-m",
                "amb_core.cli",
                "run",
                *worker_argv,
                "--grace",
                str(grace),
                "--ready-file",
                str(worker.ready_file),
            ],
            stdin=None,
            stdout=None,
            stderr=None,
            start_new_session=True,
        )
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    async def keep(worker: _Worker) -> None:
        """Run one worker, restarting it when it dies, until the supervisor stops."""
        while not stopping:
            await start(worker)
            assert worker.process is not None
            code = await worker.process.wait()
            if stopping:
                return
            worker.failures = worker.failures + 1 if code != 0 else 0
            delay = min(0.5 * 2 ** max(worker.failures - 1, 0), 10.0)
            log.error("worker %d exited with %d; restarting in %.1fs", worker.index, code, delay)
            await anyio.sleep(delay)

    def signal_all(signum: signal.Signals) -> None:
        for worker in pool:
            process = worker.process
            if process is not None and process.returncode is None:
                try:
                    process.send_signal(signum)
                except ProcessLookupError:
                    log.debug("worker %d already gone", worker.index)

    async def restart_on_change() -> None:
        awatch, python_filter = watch
        async for changes in awatch(*reload_dirs, watch_filter=python_filter()):
            log.info("%d source file(s) changed: restarting the workers", len(changes))
            signal_all(signal.SIGTERM)  # each drains and exits; keep() starts it again

    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                for worker in pool:
                    tg.start_soon(keep, worker)
                if health_port is not None:
                    from .health import serve_health

                    await tg.start(
                        serve_health,
                        health_port,
                        health_host,
                        lambda: all(w.ready() for w in pool),
                        lambda: not stopping,
                    )
                if watch is not None:
                    tg.start_soon(restart_on_change)
                async for signum in signals:
                    log.info("%s: stopping %d workers", signal.Signals(signum).name, workers)
                    break
                stopping = True
                signal_all(signal.SIGTERM)
                with anyio.CancelScope() as waiting:

                    async def second_signal() -> None:
                        nonlocal hard
                        async for _ in signals:
                            hard = True
                            signal_all(signal.SIGKILL)
                            waiting.cancel()
                            return

                    tg.start_soon(second_signal)
                    for worker in pool:
                        if worker.process is not None:
                            await worker.process.wait()
                tg.cancel_scope.cancel()
    finally:
        signal_all(signal.SIGKILL)  # never leave an orphan behind (a no-op once they exited)
        state.cleanup()
    return HARD_STOP_EXIT if hard else 0
