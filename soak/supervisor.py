"""The parent's handle on the consumer process: start it, SIGKILL it, start its successor, read its
resident memory, and stop it cleanly at the end.

Each consumer process (a *generation*) writes its handled numbers to a file of its own and its log
to another, both in the run's folder, so that the evidence of every process is kept.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.abc

from .ledger import HandledFiles

__all__ = ["ConsumerDied", "Supervisor"]


class ConsumerDied(RuntimeError):
    """The consumer exited, or did not report ready in time."""


class Supervisor:
    """Runs ``python -m soak.consumer URL TOPIC GROUP <file> *options``, one generation at a time.

    :param files: where each generation's handled numbers go.
    :param args: the consumer's arguments before the file (URL, topic, group).
    :param options: its options after the file.
    :param ready_timeout: seconds a new consumer may take to subscribe.
    """

    def __init__(
        self,
        files: HandledFiles,
        args: Sequence[str],
        options: Sequence[str],
        *,
        ready_timeout: float = 120.0,
    ) -> None:
        self.files = files
        self.args = list(args)
        self.options = list(options)
        self.ready_timeout = ready_timeout
        self.generation = -1
        self.proc: anyio.abc.Process | None = None
        self.unexpected_exits: list[int] = []
        self._lock = anyio.Lock()  # one restart at a time (planned kill, or revival)

    def log_path(self, generation: int) -> Path:
        return self.files.folder / f"consumer-{generation}.log"

    async def start(self) -> None:
        """Start the next generation and wait until it has its subscription.

        :raises ConsumerDied: when it exits first or is not ready within ``ready_timeout``.
        """
        self.generation += 1
        out = self.files.path(self.generation)
        argv = [sys.executable, "-m", "soak.consumer", *self.args, str(out), *self.options]
        with self.log_path(self.generation).open("ab") as log:
            self.proc = proc = await anyio.open_process(
                argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
            )
        assert proc.stdout is not None
        said = b""
        with anyio.move_on_after(self.ready_timeout):
            try:
                while b"ready\n" not in said:
                    said += await proc.stdout.receive()
                return
            except anyio.EndOfStream:
                pass
        await self.kill()
        tail = self.log_path(self.generation).read_text(errors="replace")[-2000:]
        raise ConsumerDied(f"consumer {self.generation} did not get ready: {tail}")

    async def kill(self) -> None:
        """SIGKILL the current generation, as a crash would."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def restart(self) -> None:
        """SIGKILL the current generation and start the next."""
        async with self._lock:
            await self.kill()
            await self.start()

    async def revive(self) -> None:
        """Start a successor if the consumer exited on its own (recorded: that is a defect)."""
        async with self._lock:
            if self.proc is not None and self.proc.returncode is not None:
                self.unexpected_exits.append(self.proc.returncode)
                await self.start()

    def rss_kib(self) -> int | None:
        """The consumer's resident memory (``VmRSS`` of /proc/<pid>/status), in KiB."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return None
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None

    async def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM: the consumer closes its bus and exits. Its exit code, or None when it had to be
        SIGKILLed after ``timeout`` (a hang at close)."""
        proc = self.proc
        if proc is None:
            return None
        proc.terminate()
        with anyio.move_on_after(timeout):
            code = await proc.wait()
            self.proc = None
            return code
        await self.kill()
        return None
