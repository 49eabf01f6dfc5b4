"""Property tests of the divergences (hypothesis)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smartft.losses import kl, symmetric_kl

logits = st.lists(st.floats(-20, 20, allow_nan=False), min_size=2, max_size=6)
moderate = st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=6)


def pair(draw_a: list[float], draw_b: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(len(draw_a), len(draw_b))
    return torch.tensor([draw_a[:n]]), torch.tensor([draw_b[:n]])


@settings(max_examples=200, deadline=None)
@given(logits, logits)
def test_symmetric_kl_is_nonnegative_and_symmetric(a: list[float], b: list[float]) -> None:
    p, q = pair(a, b)
    forward, backward = symmetric_kl(p, q), symmetric_kl(q, p)
    assert forward.item() >= 0.0
    assert torch.allclose(forward, backward)
    assert torch.allclose(forward, kl(p, q) + kl(q, p), atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(moderate, st.floats(-50, 50, allow_nan=False))
def test_zero_iff_same_distribution(a: list[float], shift: float) -> None:
    p = torch.tensor([a])
    assert symmetric_kl(p, p + shift).item() < 1e-6  # a constant shift keeps the softmax
    other = p.clone()
    other[0, 0] += 1.0
    assert symmetric_kl(p, other).item() > 0.0
