"""The hand-off from a pull to its workers: in order, waiting workers first, never losing an item."""

from __future__ import annotations

import asyncio

from conftest import wait_until
from ticketing_common._handoff import Handoff


async def test_items_come_out_in_order_and_waiting_workers_are_served_first() -> None:
    """Two workers waiting get the first two items, in the order they waited; the rest wait in order."""
    handoff: Handoff[int] = Handoff()
    first, second = asyncio.create_task(handoff.get()), asyncio.create_task(handoff.get())
    await asyncio.sleep(0)  # both are waiting now
    for item in (1, 2, 3, 4):
        handoff.put(item)
    assert (await first, await second) == (1, 2)
    assert [await handoff.get(), await handoff.get()] == [3, 4]


async def test_a_worker_cancelled_after_its_item_was_handed_over_gives_it_back() -> None:
    """Cancelled between the hand-over and its first step, the worker's item is the next one taken."""
    handoff: Handoff[str] = Handoff()
    worker = asyncio.create_task(handoff.get())
    await asyncio.sleep(0)
    handoff.put("handed over")
    handoff.put("after it")
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    assert worker.cancelled()
    assert handoff.take_all() == ["handed over", "after it"]


async def test_a_worker_cancelled_while_waiting_is_skipped() -> None:
    """A cancelled wait leaves its place in line; the item goes to the next worker that waits."""
    handoff: Handoff[str] = Handoff()
    gone = asyncio.create_task(handoff.get())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    waiting = asyncio.create_task(handoff.get())
    await asyncio.sleep(0)
    handoff.put("item")
    assert await waiting == "item"


async def test_workers_whose_handlers_wait_are_woken_one_after_another() -> None:
    """Three workers, three items, handlers that wait: each worker takes one, none is left asleep."""
    handoff: Handoff[int] = Handoff()
    started: list[int] = []
    gate = asyncio.Event()

    async def worker() -> None:
        started.append(await handoff.get())
        await gate.wait()

    workers = [asyncio.create_task(worker()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in (1, 2, 3):
        handoff.put(item)
    await wait_until(lambda: len(started) == 3, what="all three workers started")
    gate.set()
    await asyncio.gather(*workers)
    assert started == [1, 2, 3]
