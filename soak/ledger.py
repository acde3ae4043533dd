"""Who got what: the numbers of the messages published, handled and dead-lettered.

Every message carries a number ``i`` (unique per message, kept when the publisher retries it). The
publisher records a number once its publish returned, the dead-letter collector once its dead letter
arrived, and the consumers write one line per handled message to a file of their own (one file per
consumer process, so a killed process's last line never mixes with its successor's), which
:class:`HandledFiles` reads as they grow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import attrs

__all__ = ["HandledFiles", "Ledger", "Tally"]


@attrs.define
class Tally:
    """How many times each message number was seen."""

    counts: Counter[int] = attrs.field(factory=Counter)

    def add(self, number: int) -> None:
        self.counts[number] += 1

    @property
    def unique(self) -> int:
        return len(self.counts)

    @property
    def duplicates(self) -> int:
        """Sightings beyond the first of each number."""
        return sum(self.counts.values()) - len(self.counts)


@attrs.define
class Ledger:
    """The run's accounts. :meth:`until` wakes on every publish recorded."""

    published: set[int] = attrs.field(factory=set)
    poison: set[int] = attrs.field(factory=set)
    handled: Tally = attrs.field(factory=Tally)
    dead: Tally = attrs.field(factory=Tally)
    dead_reasons: Counter[str] = attrs.field(factory=Counter)
    _changed: anyio.Event = attrs.field(factory=anyio.Event)

    def add_published(self, number: int, poison: bool) -> None:
        self.published.add(number)
        if poison:
            self.poison.add(number)
        self.changed()

    def changed(self) -> None:
        """Wake :meth:`until`'s waiters (they look at their condition again)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, looking again at each publish recorded (or
        :meth:`changed` call)."""
        while not condition():
            await self._changed.wait()

    def missing(self) -> set[int]:
        """Published, and neither handled nor dead-lettered (yet: at the end, lost)."""
        return self.published - self.handled.counts.keys() - self.dead.counts.keys()

    def poison_handled(self) -> int:
        """Poison messages that reached a handler's success path (should be impossible)."""
        return len(self.poison & self.handled.counts.keys())

    def healthy_dead(self) -> int:
        """Dead letters of messages that were not poison (lost to the handler, though stored)."""
        return len(self.dead.counts.keys() - self.poison)

    def unknown(self) -> int:
        """Numbers handled or dead-lettered that no publish returned for (a publish that raised,
        although the broker had stored it, and was not retried: only when publishing stopped)."""
        return len((self.handled.counts.keys() | self.dead.counts.keys()) - self.published)


class HandledFiles:
    """The consumers' files of handled numbers, read incrementally into ``tally``."""

    def __init__(self, folder: Path, tally: Tally) -> None:
        self.folder = folder
        self.tally = tally
        self._offsets: dict[Path, int] = {}

    def path(self, generation: int) -> Path:
        """The file of the ``generation``-th consumer process."""
        return self.folder / f"handled-{generation}.txt"

    def read(self) -> None:
        """Count the complete lines added since the last call."""
        for path in sorted(self.folder.glob("handled-*.txt")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as file:
                file.seek(offset)
                data = file.read()
            end = data.rfind(b"\n") + 1
            for line in data[:end].split():
                self.tally.add(int(line))
            self._offsets[path] = offset + end
