"""Field metadata for the config dataclasses: a flag's help text and allowed values.

Every config dataclass (the run's, each method's) describes its fields with `option`, so CLI flags,
YAML keys and the Python API share one source. It lives apart from `config.py` so that the
library's and the methods' config classes need nothing from the code that parses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def option(text: str, choices: Sequence[str] | None = None) -> Any:
    """Field metadata: the flag's help text and, optionally, its allowed values."""
    return {"help": text, "choices": tuple(choices) if choices else None}
