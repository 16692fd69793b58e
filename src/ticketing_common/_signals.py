"""Run a process's main coroutine so that SIGINT or SIGTERM stops it at any moment, start-up included."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger("ticketing_common.service")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_until_stopped(
    main: Callable[[], Coroutine[Any, Any, None]], *, stop: Callable[[], bool] | None = None
) -> int:
    """Run ``main()`` in a new event loop until it returns or SIGINT/SIGTERM stops it; return 0.

    The first signal calls ``stop()``, which asks ``main`` to finish by itself (a server's graceful
    shutdown) and returns True, or False when it cannot (still starting, already stopping): then, and on
    any later signal, ``main`` is cancelled, so its ``finally`` blocks and context managers clean up.
    Without ``stop`` a signal always cancels. A service waiting for NATS or a database at start-up, or
    stuck in its shut-down, thus stops when told to, as Kubernetes expects from SIGTERM.

    Raises:
        Exception: whatever ``main`` raised, other than the cancellation a signal asked for.
    """
    return asyncio.run(_until_stopped(main, stop))


async def _until_stopped(
    main: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], bool] | None
) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - asyncio.run runs this in a task
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        if len(received) == 1 and stop is not None and stop():
            logger.info("%s received: stopping", sig.name)
            return
        logger.info("%s received: stopping now", sig.name)
        task.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await main()
    except asyncio.CancelledError:
        if not received:
            raise
        task.uncancel()
        logger.info("stopped")
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0
