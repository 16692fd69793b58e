"""A service's logs, one format for every logger, through structlog (extra ``[structlog]``).

``configure_from_env("tickets")`` reads ``LOG_LEVEL`` (default ``INFO``) and ``LOG_FORMAT`` (``text`` for
a terminal, the default, or ``json`` for a log collector) and routes every stdlib logger through
structlog's formatter: the package's, the service's, uvicorn's access log and any third party's. Every
line has a timestamp (UTC), the level, the logger and the service; event lines add what the package
passes as ``extra`` (subject, stream sequence, deliveries, queue group, message id), and a line logged
inside a traced request or handler adds its ``trace_id`` and ``span_id`` (with opentelemetry-api)::

    2026-12-07T10:00:00.123456Z [warning  ] redelivered event [ticketing_common.listener] deliveries=2 ...
    {"subject": "order:created", "stream_sequence": 7, "deliveries": 2, "queue_group": "tickets-service",
     "msg_id": "order:created:o1:0", "level": "warning", "logger": "ticketing_common.listener",
     "timestamp": "2026-12-07T10:00:00.123456Z", "service": "tickets", "message": "redelivered event"}
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Literal, TextIO

import structlog
from pydantic import Field
from structlog.typing import EventDict, Processor, WrappedLogger

from ticketing_common._settings import EnvironmentSettings, read_environment

__all__ = ["LogFormat", "configure_from_env", "configure_logging"]

LogFormat = Literal["text", "json"]

_LEVELS = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


class _LoggingEnvironment(EnvironmentSettings):
    level: _LEVELS = Field(default="INFO", validation_alias="LOG_LEVEL")
    format: LogFormat = Field(default="text", validation_alias="LOG_FORMAT")


def configure_from_env(service: str, environ: Mapping[str, str] | None = None) -> None:
    """``configure_logging`` with ``LOG_LEVEL`` and ``LOG_FORMAT``; ``InvalidEnvironment`` names a bad one."""
    env = read_environment(_LoggingEnvironment, environ, who=f"the {service} service")
    configure_logging(service, level=env.level, log_format=env.format)


def configure_logging(
    service: str, *, level: str | int = "INFO", log_format: LogFormat = "text", stream: TextIO | None = None
) -> None:
    """Send every logger's records at ``level`` and above to ``stream`` (stderr), in one format.

    Replaces the root logger's handlers; uvicorn's loggers lose theirs and propagate to it, so the access
    log comes out in the same format (``ticketing_common.uvicorn.serve`` leaves uvicorn's own set-up off).
    """
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _Service(service),
    ]
    if (trace_context := _trace_context()) is not None:
        shared.append(trace_context)
    rendering: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if log_format == "json":
        rendering += [
            structlog.processors.dict_tracebacks,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ]
    else:
        rendering.append(structlog.dev.ConsoleRenderer(colors=False))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=rendering))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True


class _Service:
    """Adds the service's name to every line."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        event.setdefault("service", self.service)
        return event


def _trace_context() -> Processor | None:
    """With opentelemetry-api: a processor that adds the current span's ``trace_id`` and ``span_id``."""
    try:
        from opentelemetry.trace import get_current_span  # noqa: PLC0415 - only where it is installed
    except ImportError:
        return None

    def add(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        context = get_current_span().get_span_context()
        if context.is_valid:  # a line logged while a request or an event is being handled
            event.setdefault("trace_id", format(context.trace_id, "032x"))
            event.setdefault("span_id", format(context.span_id, "016x"))
        return event

    return add
