"""User-facing errors: each one is printed as a single message and exits with code 2."""

from __future__ import annotations


class SmartftError(Exception):
    """An error caused by the user's input (data, config, paths), not by a bug in smartft."""

    exit_code = 2


class DataError(SmartftError):
    """A data file is missing or malformed. The message names the file, the line and the fix."""

    def __init__(
        self,
        path: object,
        problem: str,
        *,
        line: int | None = None,
        fix: str = "",
        unit: str = "line",
    ) -> None:
        where = f"{path}" if line is None else f"{path}, {unit} {line}"
        message = f"{where}: {problem}"
        if fix:
            message += f"\n  fix: {fix}"
        super().__init__(message)
        self.path = str(path)
        self.line = line


class ConfigError(SmartftError):
    """A flag, YAML key or value is invalid, or a model path cannot be used."""


class TrainingError(SmartftError):
    """Training cannot go on (e.g. too many non-finite updates in a row)."""

    exit_code = 3
