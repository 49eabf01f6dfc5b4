"""Registry of fine-tuning methods: `--method NAME` maps to a `Method` subclass here.

Method modules import the protocol (`methods.base`) and the library's building blocks, never this
registry nor one another, so a method can be read, tested and removed on its own.
"""

from __future__ import annotations

from typing import Any

from smartft.errors import ConfigError
from smartft.methods.alice import Alice
from smartft.methods.base import Method, SetupInfo
from smartft.methods.child_tuning import ChildTuning
from smartft.methods.dps import DPS
from smartft.methods.freelb import FreeLB
from smartft.methods.l2sp import L2SP
from smartft.methods.lnsr import LNSR
from smartft.methods.mixout import Mixout
from smartft.methods.neftune import NEFTune
from smartft.methods.r3f import R3F, R4F
from smartft.methods.smart import Smart

_ALL: tuple[type[Method[Any]], ...] = (
    Method,
    Smart,
    Alice,
    R3F,
    R4F,
    FreeLB,
    ChildTuning,
    Mixout,
    L2SP,
    LNSR,
    DPS,
    NEFTune,
)
METHODS: dict[str, type[Method[Any]]] = {m.name: m for m in _ALL}


def get_method(name: str) -> type[Method[Any]]:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def method_config_classes() -> list[type]:
    """Every method's config classes, each once, in registry order."""
    classes: list[type] = []
    for method in METHODS.values():
        classes.extend(c for c in method.config_classes if c not in classes)
    return classes


__all__ = ["METHODS", "Method", "SetupInfo", "get_method", "method_config_classes"]
