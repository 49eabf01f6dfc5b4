"""Mixed precision: the working precision of forward passes, and what it can represent.

`--bf16` and `--fp16` run forward passes under `torch.autocast`; parameters, optimizer state,
gradients, losses and divergences stay in float32. fp16 adds a gradient scaler (GPU only), which
also scales the inner ascent gradients of SMART, ALICE and FreeLB so that they do not underflow.

A perturbation smaller than the working precision's rounding step, relative to the values it is
added to, disappears when those values are rounded for the next matrix product: the method then
measures rounding noise, not the perturbation. `radius_warning` says so, naming the flag to change.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from smartft.errors import ConfigError
from smartft.provenance import native_cpu_bf16

DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# half the spacing of floating-point numbers just above 1 (unit roundoff): a relative change
# below it is rounded away
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}

# said once per run when --bf16 runs on a CPU without native bfloat16 (measured on an AVX2-only
# AMD EPYC, MiniLM, one thread: benchmarks/results/precision.md, docs/precision.md)
EMULATED_BF16 = (
    "--bf16: this CPU has neither AVX-512 BF16 nor AMX, so bfloat16 matrix products are "
    "emulated: a step takes about 15-23x as long as in float32 (measured on an AVX2-only CPU, "
    "docs/precision.md); the numbers are bf16's all the same. Train in float32 here"
)

# a perturbation is representable when its size is at least this many unit roundoffs of the
# values it perturbs (measured: benchmarks/results/precision.md)
REPRESENTABLE = 4.0


class PrecisionWarning(UserWarning):
    """Mixed precision would not do what was asked: a perturbation below what the working
    precision represents, or bfloat16 emulated on a CPU without native support."""


@dataclass(frozen=True)
class Precision:
    """The working precision of forward passes, and fp16's gradient scaler.

    smartft applies autocast itself (not through accelerate, whose setting is fixed for the life
    of a process): around the clean forward and the method's terms, so that every extra pass a
    method runs (perturbed, teacher, noised) uses the same precision as the clean one, and
    around evaluation."""

    dtype: torch.dtype = torch.float32
    device_type: str = "cpu"
    scaler: Any = field(default=None, compare=False)  # torch.amp.GradScaler under fp16

    @property
    def name(self) -> str:
        return next(k for k, v in DTYPES.items() if v == self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Forward passes in the working precision (nothing changes in float32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scale(self) -> float:
        """The gradient scaler's current scale (1 without one): methods multiply the losses of
        their inner ascent gradients by it, so that fp16 gradients do not underflow."""
        return float(self.scaler.get_scale()) if self.scaler is not None else 1.0


def choose(bf16: bool, fp16: bool, tf32: bool | None, cuda: bool) -> Precision:
    """The precision the flags ask for on this machine, or a ConfigError saying why not."""
    if bf16 and fp16:
        raise ConfigError("--bf16 and --fp16 exclude each other; choose one")
    if fp16 and not cuda:
        raise ConfigError(
            "--fp16 needs a CUDA GPU (float16 autocast with a gradient scaler); on this CPU use "
            "--bf16, which needs no scaler"
        )
    if tf32 and not cuda:
        raise ConfigError("--tf32 applies to NVIDIA GPUs (Ampere or newer); drop it on a CPU")
    if bf16 and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError("--bf16: this GPU does not support bfloat16; use --fp16")
    if cuda and tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if bf16 and not cuda and not native_cpu_bf16():
        warnings.warn(EMULATED_BF16, PrecisionWarning, stacklevel=2)
    dtype = torch.bfloat16 if bf16 else torch.float16 if fp16 else torch.float32
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    return Precision(dtype, "cuda" if cuda else "cpu", scaler)


def radius_warning(flag: str, size: float, scale: float, dtype: torch.dtype) -> str | None:
    """A message when a perturbation of `size` on values of typical magnitude `scale` is below
    what `dtype` represents; None when it is representable (or the precision is float32)."""
    if dtype == torch.float32 or size <= 0 or scale <= 0:
        return None
    floor = REPRESENTABLE * UNIT_ROUNDOFF[dtype] * scale
    if size >= floor:
        return None
    name = next(k for k, v in DTYPES.items() if v == dtype)
    return (
        f"{flag} = {size:.3g} is below what {name} represents on these values (typical size "
        f"{scale:.3g}, so changes under {floor:.2g} round away): the term measures rounding "
        f"noise, not the perturbation. Use {flag} >= {floor:.2g}, or train in float32"
    )


def warn_radius(flag: str, size: float, scale: float, dtype: torch.dtype) -> None:
    message = radius_warning(flag, size, scale, dtype)
    if message is not None:
        warnings.warn(message, PrecisionWarning, stacklevel=2)


def embedding_scale(model: torch.nn.Module) -> float:
    """The typical size of a word embedding: the median over the vocabulary of each row's
    largest absolute value (the ∞-norm that SMART's ball is measured in)."""
    embeddings = model.get_input_embeddings()  # type: ignore[operator]
    weight = embeddings.weight.detach().float()
    return float(weight.abs().amax(dim=-1).median())


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """Collect the PrecisionWarnings raised inside (each message once)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PrecisionWarning)
        found: list[str] = []
        yield found
    for item in caught:
        if issubclass(item.category, PrecisionWarning) and str(item.message) not in found:
            found.append(str(item.message))
        elif not issubclass(item.category, PrecisionWarning):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
