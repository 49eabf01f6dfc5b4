"""Field metadata for the config dataclasses: a flag's help text, allowed values and range.

Every config dataclass (the run's, each method's) describes its fields with `option`, so CLI flags,
YAML keys and the Python API share one source, and calls `check_ranges` when it is built, so an
out-of-range value is refused however it was given. It lives apart from `config.py` so that the
library's and the methods' config classes need nothing from the code that parses them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from smartft.errors import ConfigError


def option(
    text: str,
    choices: Sequence[str] | None = None,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> Any:
    """Field metadata: the flag's help text, optionally its allowed values, and for numbers the
    range [low, high] (either end open, either missing)."""
    bounds = None if low is None and high is None else (low, high, open_low, open_high)
    return {"help": text, "choices": tuple(choices) if choices else None, "range": bounds}


def describe(bounds: tuple[float | None, float | None, bool, bool]) -> str:
    """'≥ 1', '> 0', 'in (0, 1]', ... for an error message or a help line."""
    low, high, open_low, open_high = bounds
    if high is None:
        return f"{'>' if open_low else '≥'} {low:g}"
    if low is None:
        return f"{'<' if open_high else '≤'} {high:g}"
    return f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def in_range(value: float, bounds: tuple[float | None, float | None, bool, bool]) -> bool:
    low, high, open_low, open_high = bounds
    if isinstance(value, float) and math.isnan(value):
        return False
    if low is not None and (value < low or (open_low and value == low)):
        return False
    return not (high is not None and (value > high or (open_high and value == high)))


def check_ranges(config: Any) -> None:
    """Raise a ConfigError naming the option, its value and the allowed range for the first
    field of the dataclass `config` outside its range (None is never checked)."""
    for f in fields(config):
        bounds = f.metadata.get("range")
        value = getattr(config, f.name)
        if bounds is None or value is None or isinstance(value, bool):
            continue
        if not in_range(value, bounds):
            raise ConfigError(
                f"--{f.name} {value!r} is out of range: it must be {describe(bounds)}"
            )
