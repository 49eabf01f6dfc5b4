"""Loss functions, all computed in float32 whatever the model's precision."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def symmetric_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(P‖Q) + KL(Q‖P) for softmax distributions given by logits.

    Written as Σ (P − Q)(log P − log Q), which is exactly the sum of both KLs and is ≥ 0 term by
    term, so rounding can never make it negative.
    """
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1).mean()


def symmetric_kl_detached(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(Q̄‖P) + KL(P̄‖Q) with the bar side detached in each direction, as mt-dnn's
    `SymKlCriterion` computes it: the same value as `symmetric_kl`, about half its gradient."""
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    p_bar, q_bar = log_p.detach(), log_q.detach()
    forward = (q_bar.exp() * (q_bar - log_p)).sum(-1)
    backward = (p_bar.exp() * (p_bar - log_q)).sum(-1)
    return (forward + backward).mean()


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(P‖Q)."""
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def squared_error(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Batch mean of (p − q)² for regression outputs; [B, 1] and [B] are both read as [B].

    Shapes are made equal before subtracting: comparing [B] with [B, 1] would broadcast to [B, B]
    (a defect of the reference code).
    """
    p, q = p.float().reshape(p.shape[0], -1), q.float().reshape(q.shape[0], -1)
    if p.shape != q.shape:
        raise ValueError(
            f"regression outputs differ in shape: {tuple(p.shape)} vs {tuple(q.shape)}"
        )
    return (p - q).pow(2).sum(-1).mean()


def divergence(kind: str, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The named divergence between two model outputs (logits or regression scores)."""
    if kind == "sym_kl":
        return symmetric_kl(p, q)
    if kind == "sym_kl_mtdnn":
        return symmetric_kl_detached(p, q)
    if kind == "kl":
        return kl(p, q)
    if kind == "mse":
        return squared_error(p, q)
    raise ValueError(f"unknown divergence '{kind}' (sym_kl, sym_kl_mtdnn, kl, mse)")


def regression_of(outputs: torch.Tensor, regression: bool | None) -> bool:
    """Whether these outputs are a regression's: as told, or (None: a multi-task model, whose
    heads differ) when there is a single output."""
    return outputs.shape[-1] == 1 if regression is None else regression


def task_loss(
    logits: torch.Tensor, labels: torch.Tensor, regression: bool | None = None
) -> torch.Tensor:
    """Cross-entropy for classification, mean squared error for regression (float32)."""
    if regression_of(logits, regression):
        return squared_error(logits, labels)
    return F.cross_entropy(logits.float(), labels)


def output_divergence(regression: bool, kl_gradient: str = "full") -> str:
    """ℓ_s of SMART's paper between two outputs of one model: symmetric KL for classification
    (with the full gradient, or mt-dnn's half: `kl_gradient`), squared error for regression."""
    if regression:
        return "mse"
    return "sym_kl_mtdnn" if kl_gradient == "mtdnn" else "sym_kl"


def distillation_loss(logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(teachers ‖ student at T), batch mean; squared error for a single output."""
    if logits.shape[-1] == 1:
        return (logits.float().reshape(-1) - soft.reshape(-1)).pow(2).mean()
    log_student = F.log_softmax(logits.float() / temperature, dim=-1)
    teacher = soft.clamp(min=1e-12)
    return (teacher * (teacher.log() - log_student)).sum(-1).mean() * temperature**2
