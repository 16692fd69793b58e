"""Run the reference services as processes on one machine: what the demo and the race tests start.

Each instance is ``python -m <service>`` from this folder with its own port and log file; instances of
one service share its database (``database_url(service)``), so two of them are two replicas.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVICES_DIR = Path(__file__).parent
HTTP_SERVICES = ("auth", "tickets", "orders", "payments")


@dataclass(frozen=True)
class Instance:
    """One process of a service: its name (log file, key of its URL), its module and its own variables."""

    name: str
    service: str
    env: Mapping[str, str] = field(default_factory=dict)


def the_five(window: float) -> list[Instance]:
    """One instance of each service; an order waits ``window`` seconds for its payment."""
    orders_env = {"EXPIRATION_WINDOW_SECONDS": str(window)}
    return [
        Instance(name, name, orders_env if name == "orders" else {})
        for name in (*HTTP_SERVICES, "expiration")
    ]


def free_port() -> int:
    """A port nothing listens on now (the service binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running(  # noqa: PLR0913 - what a set of services needs, all keyword-only but the instances
    instances: Sequence[Instance],
    *,
    nats_url: str,
    jwt_key: str,
    database_url: Callable[[str], str],
    logs: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, str]]:
    """Start the instances; yield the HTTP ones' base URLs by name; stop them all (SIGTERM, then SIGKILL).

    ``env`` is added to every instance's environment (``STRIPE_KEY`` is dropped unless it names one).
    """
    shared = {
        **os.environ,
        "JWT_KEY": jwt_key,
        "NATS_URL": nats_url,
        "SECURE_COOKIES": "false",  # plain HTTP on localhost: clients must send the cookie back
        "PYTHONPATH": os.pathsep.join([str(SERVICES_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    shared.pop("STRIPE_KEY", None)  # the fake gateway, whatever the shell has, unless env says otherwise
    shared.update(env or {})
    migrate({instance.service for instance in instances}, shared, database_url, logs)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        for instance in instances:
            instance_env = {**shared, "DATABASE_URL": database_url(instance.service), **instance.env}
            instance_env["PORT"] = str(free_port())  # the expiration service serves its probes there
            if instance.service in HTTP_SERVICES:
                urls[instance.name] = f"http://127.0.0.1:{instance_env['PORT']}"
            with (logs / f"{instance.name}.log").open("wb") as log:
                processes[instance.name] = subprocess.Popen(  # noqa: S603 - our interpreter and our modules
                    [sys.executable, "-m", instance.service],
                    cwd=SERVICES_DIR,
                    env=instance_env,
                    stdout=log,
                    stderr=log,
                )
        yield urls
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 10 s: killed", file=sys.stderr)
                process.kill()


def migrate(
    services: set[str], env: Mapping[str, str], database_url: Callable[[str], str], logs: Path
) -> None:
    """Upgrade each service's database to its newest revision (``python -m <service> migrate``), at once.

    Raises:
        RuntimeError: a migration failed; its log is in the message.
    """
    started = {}
    for service in sorted(services & set(HTTP_SERVICES)):  # expiration has no database
        with (logs / f"{service}-migrate.log").open("wb") as log:
            started[service] = subprocess.Popen(  # noqa: S603 - our interpreter and our modules
                [sys.executable, "-m", service, "migrate"],
                cwd=SERVICES_DIR,
                env={**env, "DATABASE_URL": database_url(service)},
                stdout=log,
                stderr=log,
            )
    for service, process in started.items():
        if process.wait(timeout=120) != 0:
            output = (logs / f"{service}-migrate.log").read_text()
            raise RuntimeError(f"python -m {service} migrate failed:\n{output}")


def wait_until_answering(urls: Mapping[str, str], timeout: float = 30.0) -> None:
    """Wait until every HTTP instance answers (an unknown route's 404), or raise ``RuntimeError``."""
    deadline = time.monotonic() + timeout
    with httpx.Client() as http:
        for name, url in urls.items():
            while True:
                try:
                    if http.get(f"{url}/health-check-unknown-route").status_code == 404:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not observed within {timeout:g} s: the {name} service at {url}")
                time.sleep(0.05)


def last_lines(logs: Path, count: int = 15) -> str:
    """The last lines of every instance's log, to show why something failed."""
    return "\n".join(
        f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-count:])
        for log in sorted(logs.glob("*.log"))
    )
