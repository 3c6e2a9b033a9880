"""Turns for searches that run side by side: one measurement at a time, each search in turn.

`loadgen`'s options are searched in lockstep within a round: each option's search runs in a
thread of its own, and every LoadGen run (or probe) it makes waits for its turn. Turns go
round the searches still going, so step k of every option's search falls in one short span
of the machine's time: a spell that slows the machine for a few seconds slows every option's
step alike, where searches made one after another would each meet a different spell. A
search that ends leaves the rotation; one that raises leaves it too (`Turns.member` does).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence


class Turns:
    """Round-robin turns among `members`, in their order: a member's `turn()` blocks until
    every member before it in the rotation has had its turn (or left)."""

    def __init__(self, members: Sequence[str]) -> None:
        if len(set(members)) != len(members):
            raise ValueError(f"members named twice: {list(members)}")
        self._order = list(members)
        self._next = 0  # index in _order of the member whose turn it is
        self._busy = False
        self._changed = threading.Condition()
        self.taken: list[str] = []  # each turn's member, in the order they were given
        self.held: dict[str, float] = dict.fromkeys(members, 0.0)  # seconds in its turns

    @property
    def members(self) -> tuple[str, ...]:
        with self._changed:
            return tuple(self._order)

    @contextlib.contextmanager
    def turn(self, member: str) -> Iterator[None]:
        """Wait for `member`'s turn, hold it for the block, then pass it on."""
        with self._changed:
            if member not in self._order:
                raise ValueError(f"{member!r} is not in the rotation")
            self._changed.wait_for(lambda: not self._busy
                                   and self._order[self._next] == member)
            self._busy = True
            self.taken.append(member)
        began = time.perf_counter()
        try:
            yield
        finally:
            with self._changed:
                self.held[member] += time.perf_counter() - began
                self._busy = False
                self._next = (self._order.index(member) + 1) % len(self._order)
                self._changed.notify_all()

    def leave(self, member: str) -> None:
        """Take `member` out of the rotation (its search ended); its turn, if it was next,
        passes on."""
        with self._changed:
            if member not in self._order:
                return
            at = self._order.index(member)
            self._order.pop(at)
            if self._order:
                if at < self._next or self._next >= len(self._order):
                    self._next = (self._next - (at < self._next)) % len(self._order)
            else:
                self._next = 0
            self._changed.notify_all()

    @contextlib.contextmanager
    def member(self, member: str) -> Iterator[None]:
        """The block a member's whole search runs in: it leaves the rotation when the block
        ends, however it ends, so the others never wait for a search that is gone."""
        try:
            yield
        finally:
            self.leave(member)
