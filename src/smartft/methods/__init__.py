"""Registry of fine-tuning methods: `--method NAME` maps to a `Method` subclass here."""

from __future__ import annotations

from smartft.errors import ConfigError
from smartft.methods.alice import Alice
from smartft.methods.base import Method, SetupInfo, model_inputs
from smartft.methods.child_tuning import ChildTuning
from smartft.methods.dps import DPS
from smartft.methods.freelb import FreeLB
from smartft.methods.l2sp import L2SP
from smartft.methods.lnsr import LNSR
from smartft.methods.mixout import Mixout
from smartft.methods.r3f import R3F, R4F
from smartft.methods.smart import Smart

_ALL = (Method, Smart, Alice, R3F, R4F, FreeLB, ChildTuning, Mixout, L2SP, LNSR, DPS)
METHODS: dict[str, type[Method]] = {m.name: m for m in _ALL}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "Method", "SetupInfo", "get_method", "model_inputs"]
