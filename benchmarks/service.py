"""A service's throughput: ``POST /api/tickets`` (record, outbox row, PubAck) beside the same, no event.

The tickets service runs under uvicorn in a process of its own (``service_app.py``) on SQLite and, where
pgserver is installed, on PostgreSQL; an httpx loop here keeps ``--concurrency`` requests in flight. The
two routes take turns (interleaved repeats, medians). The event's share is its extra time per request;
``/bench/flush`` says how much of that the wait for the PubAck is. Run: ``nox -s bench`` runs it after
bench.py (``-- --quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent / "examples" / "services"))

from processes import free_port, wait_until_answering
from ticketing_common.fastapi import SessionConfig
from ticketing_common.testing import NatsServer

ROUTES = {"with event": "/api/tickets", "no event": "/bench/tickets"}
APP = Path(__file__).parent / "service_app.py"


@contextmanager
def serving(nats_url: str, database_url: str, jwt_key: str, logs: Path) -> Iterator[str]:
    """The tickets service with the bench routes, in a process of its own; yield its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "JWT_KEY": jwt_key,
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    with (logs / "tickets.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=log, stderr=log)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering({"tickets": url}, timeout=60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


async def load(
    client: httpx.AsyncClient, path: str, requests: int, concurrency: int
) -> tuple[float, list[float]]:
    """POST ``requests`` tickets, ``concurrency`` at a time; return requests/s and each one's seconds."""
    latencies: list[float] = []
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            response = await client.post(path, json={"title": "concert", "price": 10})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 201:
                raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started), latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Measured:
    """Per route: median requests/s, p50 and p99 seconds; the event's share; the flush's p50 seconds.

    The share is the median over the repeats of each repeat's own share (its two routes ran one after
    the other), which the machine's drift between repeats moves less than a ratio of medians.
    """

    routes: dict[str, tuple[float, float, float]]
    share: float
    flush_p50: float


async def measure(url: str, cookie: str, requests: int, concurrency: int, repeats: int) -> Measured:
    """Warm both routes up, then run them in turns; medians of requests/s, p50 and p99 over the repeats."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"cookie": cookie}, limits=limits, timeout=30
    ) as client:
        for path in ROUTES.values():
            await load(client, path, min(200, requests), concurrency)
        flushes_before = len((await client.get("/bench/flush")).json())
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ROUTES}
        for _ in range(repeats):
            names = list(ROUTES)
            random.shuffle(names)
            for name in names:
                rate, latencies = await load(client, ROUTES[name], requests, concurrency)
                figures[name].append((rate, percentile(latencies, 0.5), percentile(latencies, 0.99)))
        flushes = (await client.get("/bench/flush")).json()[flushes_before:]
    medians = {
        name: (
            statistics.median(run[0] for run in runs),
            statistics.median(run[1] for run in runs),
            statistics.median(run[2] for run in runs),
        )
        for name, runs in figures.items()
    }
    shares = [
        1 - with_event[0] / without[0]
        for with_event, without in zip(figures["with event"], figures["no event"], strict=True)
    ]
    return Measured(medians, statistics.median(shares), statistics.median(flushes))


def databases(folder: Path) -> Iterator[tuple[str, str]]:
    """SQLite, and PostgreSQL if pgserver is installed: (name, DATABASE_URL)."""
    yield "SQLite", f"sqlite+aiosqlite:///{folder / 'tickets.db'}"
    try:
        from pgserver.postgres_server import get_server  # noqa: PLC0415 - optional: PostgreSQL in a wheel
    except ImportError:
        return
    # Not under a 0700 temporary folder: run as root, pgserver hands its folder to a user of its own.
    pg_folder = Path(tempfile.mkdtemp(prefix="ticketing-bench-postgres-"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        server = get_server(pg_folder, cleanup_mode="stop")
    try:
        yield "PostgreSQL", server.get_uri().replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        server.cleanup()
        shutil.rmtree(pg_folder, ignore_errors=True)


def main(requests: int, concurrency: int, repeats: int) -> None:
    jwt_key = secrets.token_urlsafe(32)
    session = SessionConfig.from_env({"JWT_KEY": jwt_key}, secure=False)
    cookie = session.set_cookie_header(session.new_session(user_id="seller", email="s@x.com")).split(";")[0]
    print(
        f"\nservice: POST /api/tickets against the same route without its event, {concurrency} requests in "
        f"flight, {repeats} interleaved repeats of {requests} requests (medians)"
    )
    print(f"{'':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    with tempfile.TemporaryDirectory() as tmp, NatsServer() as nats_server:
        for name, database_url in databases(Path(tmp)):
            with serving(nats_server.url, database_url, jwt_key, Path(tmp)) as url:
                result = asyncio.run(measure(url, cookie, requests, concurrency, repeats))
            for route, (rate, p50, p99) in result.routes.items():
                print(f"{name + ' ' + route:<30}{rate:>9.0f}{p50 * 1e3:>9.2f}{p99 * 1e3:>9.2f}")
            with_event, without = (1 / result.routes[route][0] for route in ROUTES)
            print(
                f"{name}: the event is {result.share:.0%} of a request's time (median of the repeats; "
                f"{(with_event - without) * 1e3:.2f} of {with_event * 1e3:.2f} ms a request at the median "
                f"rates); the route's flush (relay pass to PubAck) takes {result.flush_p50 * 1e3:.2f} ms "
                "at p50"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, to check the benchmark works")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats (default 9)")
    arguments = parser.parse_args()
    if arguments.quick:
        main(requests=200, concurrency=arguments.concurrency, repeats=1)
    else:
        main(requests=1000, concurrency=arguments.concurrency, repeats=arguments.repeats)
