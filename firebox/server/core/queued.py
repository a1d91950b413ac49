"""A pool's queue of inputs, whose arguments stay in memory only within a window shared by all
pools: past it, a stored input waits with its arguments in the database, and is read back
shortly before it is handed out. A `.map` of a million inputs then costs the server their
bookkeeping, not their arguments."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...wire import settings

if TYPE_CHECKING:
    from .pools import Input

MB = 1024 * 1024


def window_bytes() -> int:
    """The queued inputs' arguments held in memory, all pools together (FIREBOX_MAX_QUEUED_MB)."""
    return settings.MAX_QUEUED.get()


class ArgsWindow:
    """Bytes of queued inputs' arguments in memory, across every pool's queue."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def fits(self, size: int) -> bool:
        return self.used + size <= self.total


class InputQueue:
    """Queued inputs in the order they are handed out: first `ready` ones, whose arguments are
    in memory, then `stored` ones, whose arguments are in the database. An input that arrives
    while others are stored, or that does not fit the window, is stored too (when its rows are:
    a fast call's input and a web request are never written before they finish, so they stay
    ready, ahead of the stored ones). Inputs are read back in order, by the scheduler's loader."""

    def __init__(self, window: ArgsWindow) -> None:
        self.window = window
        self.ready: deque[Input] = deque()
        self.stored: deque[Input] = deque()

    def __len__(self) -> int:
        return len(self.ready) + len(self.stored)

    def __bool__(self) -> bool:
        return bool(self.ready or self.stored)

    def __iter__(self) -> Iterator[Input]:
        yield from self.ready
        yield from self.stored

    def append(self, inp: Input, storable: bool) -> None:
        if inp.args is None or (storable and (self.stored or not self.window.fits(inp.size))):
            inp.args = None
            self.stored.append(inp)
            return
        self._hold(inp)
        self.ready.append(inp)

    def appendleft(self, inp: Input) -> None:
        """Put an input back first in line (one its container was stopped or killed with); one
        whose arguments were let go when it was handed out is first of the stored ones."""
        if inp.args is None:
            self.stored.appendleft(inp)
            return
        self._hold(inp)
        self.ready.appendleft(inp)

    def popleft(self) -> Input:
        """The first ready input, to be handed out: its arguments leave the window."""
        inp = self.ready.popleft()
        self.window.used -= inp.size
        return inp

    def clear(self) -> list[Input]:
        """Empty the queue; returns what was in it, in order."""
        waiting = list(self)
        self.window.used -= sum(inp.size for inp in self.ready)
        self.ready.clear()
        self.stored.clear()
        return waiting

    def remove_call(self, call_id: str) -> None:
        """Take every input of a call out of the queue."""
        self.window.used -= sum(inp.size for inp in self.ready if inp.call_id == call_id)
        self.ready = deque(inp for inp in self.ready if inp.call_id != call_id)
        self.stored = deque(inp for inp in self.stored if inp.call_id != call_id)

    def take_stored(self, most: int) -> list[Input]:
        """The first stored inputs whose arguments fit the window, at most `most`, their room
        taken: they are read back and then put in line with `loaded`. One input is taken even
        if it does not fit when none is ready, so an input larger than the window still runs."""
        taken: list[Input] = []
        while self.stored and len(taken) < most:
            size = self.stored[0].size
            if not self.window.fits(size) and (taken or self.ready):
                break
            self.window.used += size
            taken.append(self.stored.popleft())
        return taken

    def loaded(self, inp: Input) -> None:
        """A taken input is back with its arguments: it goes behind the ready ones."""
        self.ready.append(inp)

    def forget(self, inp: Input) -> None:
        """A taken input will not be put in line (it finished or was cancelled meanwhile)."""
        self.window.used -= inp.size

    def put_back(self, taken: list[Input]) -> None:
        """Taken inputs whose arguments could not be read: first in the stored line again."""
        for inp in taken:
            self.window.used -= inp.size
        self.stored.extendleft(reversed(taken))

    def _hold(self, inp: Input) -> None:
        self.window.used += inp.size
