"""The hand-off from a listener's pull to its workers: a FIFO cheaper per event than ``asyncio.Queue``.

``asyncio.Queue`` wakes a waiting worker and lets it take the item, counts unfinished tasks and checks a
size limit on every put. The window of a pull is already bounded by ``prefetch`` and nothing joins on it,
so this keeps only a deque and hands an item straight to a worker that waits: 270 against 620 ns an item
in bursts of 128 (990 against 620 in bursts of 16), measured here, of a listener's own 2.3 us an event.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """Items put by one side, taken in order by any number of waiting tasks."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiting: deque[asyncio.Future[T]] = deque()

    def put(self, item: T) -> None:
        """Give ``item`` to the longest-waiting task, or keep it for the next ``get``."""
        waiting = self._waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():  # a cancelled get leaves its future behind
                waiter.set_result(item)
                return
        self._items.append(item)

    async def get(self) -> T:
        """The oldest item; wait for one if there is none."""
        if self._items:
            return self._items.popleft()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed over, then cancelled before it ran: the item goes back, first in line.
            if waiter.done() and not waiter.cancelled():
                self._items.appendleft(waiter.result())
            raise

    def take_all(self) -> list[T]:
        """Remove and return the items no task has taken yet."""
        items = list(self._items)
        self._items.clear()
        return items
