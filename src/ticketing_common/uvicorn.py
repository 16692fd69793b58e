"""Serve a service's app with uvicorn so that SIGINT or SIGTERM stops it at any moment (extra ``[uvicorn]``).

``uvicorn.run`` waits for the app's start-up before it looks at a signal: a service whose start-up waits
for an unreachable NATS server ignored SIGTERM until killed. Here the app's lifespan runs in the task a
signal cancels, and uvicorn only serves HTTP::

    from ticketing_common.uvicorn import serve

    raise SystemExit(serve(create_app(settings), host=settings.host, port=settings.port))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ticketing_common._signals import run_until_stopped

__all__ = ["serve"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # run_until_stopped handles the signals; uvicorn would also re-raise them once stopped.
        yield


def serve(app: Starlette, *, host: str, port: int, graceful_timeout: int = 10, **options: object) -> int:
    """Run the app's lifespan and serve it on ``host:port`` until a signal; return the exit status, 0.

    The first SIGINT or SIGTERM while serving stops uvicorn gracefully (requests in progress get up to
    ``graceful_timeout`` s), then the lifespan shuts down; a signal during start-up or shut-down, or a
    second one, cancels what is running, whose clean-up still runs. ``options`` go to ``uvicorn.Config``.

    Raises:
        Exception: the lifespan's start-up failed, as it raised.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        # Logging is the process's (ticketing_common.structlog): uvicorn's own set-up would replace it.
        log_config=None,
        timeout_graceful_shutdown=graceful_timeout,
        **options,  # type: ignore[arg-type]
    )
    server = _Server(config)
    serving = False

    async def main() -> None:
        nonlocal serving
        async with app.router.lifespan_context(app):
            serving = True
            try:
                await server.serve()
            finally:
                serving = False

    def stop() -> bool:
        if not serving or server.should_exit:
            return False
        server.should_exit = True
        return True

    return run_until_stopped(main, stop=stop)
