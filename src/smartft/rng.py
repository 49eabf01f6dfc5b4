"""Saving and replaying the random state that dropout draws from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

RngState = tuple[torch.Tensor, torch.Tensor | None]


def rng_state(device: torch.device) -> RngState:
    """The generators dropout draws from on `device` (CPU, and CUDA when it runs there): saved
    before a forward and restored before a second one, the second draws the same dropout masks."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_rng_state(state: RngState, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class CleanPassMasks:
    """Replays the clean forward's dropout masks in later passes over the same batch.

    `mark` saves the generators' state just before the clean forward; each pass run inside
    `replay` starts from that state (so it draws the same masks, given the same input shapes),
    and the run's random stream continues afterwards exactly where it was, as if the extra pass
    had not run."""

    def __init__(self) -> None:
        self.state: RngState | None = None

    def mark(self, device: torch.device) -> None:
        self.state = rng_state(device)

    @contextmanager
    def replay(self, device: torch.device) -> Iterator[None]:
        if self.state is None:
            raise RuntimeError("mask replay: mark() must run before each clean forward")
        after = rng_state(device)
        set_rng_state(self.state, device)
        try:
            yield
        finally:
            set_rng_state(after, device)
