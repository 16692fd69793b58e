"""Settings read from the environment with pydantic-settings: typed values, errors that name the variable.

Each settings class names its variables with ``validation_alias``; ``SECURE_COOKIES=off`` is False and
``SECURE_COOKIES=maybe`` stops the start-up, where a hand-written ``!= "false"`` took both for True.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ticketing_common.errors import ConfigurationError

S = TypeVar("S", bound="EnvironmentSettings")
# Their values are never repeated in an error message.
_SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")


class EnvironmentSettings(BaseSettings):
    """Variables as POSIX has them: case-sensitive, and an empty one counts as unset."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True)


class InvalidEnvironment(ConfigurationError):  # noqa: N818 - a ConfigurationError, named for its cause
    """Variables are missing or invalid: ``problems`` says what is wrong with each."""

    def __init__(self, who: str, problems: list[str]) -> None:
        wanted = [problem.removeprefix("set ") for problem in problems if problem.startswith("set ")]
        others = [problem for problem in problems if not problem.startswith("set ")]
        reasons = ([f"set {' and '.join(wanted)}"] if wanted else []) + others
        super().__init__(f"{who} cannot start: {'; '.join(reasons)}")
        self.problems = problems


def read_environment(settings: type[S], environ: Mapping[str, str] | None, *, who: str) -> S:
    """``settings`` from ``environ`` (the process's environment if None), or ``InvalidEnvironment``.

    The error names every variable that is missing or invalid at once, each with what is wrong with it.
    """
    try:
        if environ is None:
            return settings()
        # A mapping given by the caller stands for the whole environment: nothing of os.environ leaks in.
        return settings.model_validate({name: value for name, value in environ.items() if value})
    except ValidationError as error:
        raise InvalidEnvironment(who, [_problem(detail) for detail in error.errors()]) from None


def _variable(detail: Mapping[str, Any]) -> str:
    return ".".join(str(part) for part in detail["loc"]) or "the environment"


def _problem(detail: Mapping[str, Any]) -> str:
    variable = _variable(detail)
    if detail["type"] == "missing" or (detail["type"] == "string_too_short" and not detail["input"]):
        return f"set {variable}"
    problem = f"{variable} is invalid: {detail['msg']}"
    if not any(word in variable for word in _SECRET_WORDS):
        problem += f" (got {detail['input']!r})"
    return problem
