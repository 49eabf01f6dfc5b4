"""The peer methods as their papers and official code define them: one test per departure that
the line-by-line comparison found (each fails on the code before the fix)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from smartft.losses import symmetric_kl, symmetric_kl_detached
from smartft.methods import SetupInfo
from smartft.methods.child_tuning import ChildTuning, ChildTuningConfig
from smartft.methods.dps import DPS, DPSConfig
from smartft.methods.freelb import FreeLB, FreeLBConfig
from smartft.methods.mixout import Mixout, MixoutConfig, MixoutLinear
from smartft.optim import make_optimizer

from .test_smart import batch, tiny
from .test_smart_options import dropout_model

LABELS = torch.tensor([0, 1, 1, 0])


def info(**extra: Any) -> SetupInfo:
    return SetupInfo(total_steps=10, regression=False, seed=0, **extra)


def freelb_term(method: FreeLB, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(the clean loss, FreeLB's term) for one batch, the loop's calls in the loop's order."""
    inputs = {**batch(), "labels": LABELS}
    method.before_forward(model, inputs, lambda loss: None)
    logits = model(**batch()).logits
    loss = torch.nn.functional.cross_entropy(logits, LABELS)
    return loss, method.loss_terms(model, inputs, logits)["loss_freelb"]


def spy_perturbations(method: FreeLB) -> list[torch.Tensor]:
    assert method.hook is not None
    seen: list[torch.Tensor] = []
    original = method.hook.perturbed

    def spy(delta: torch.Tensor, *args: object, **kwargs: object) -> object:
        seen.append(delta.detach().clone())
        return original(delta, *args, **kwargs)  # type: ignore[arg-type]

    method.hook.perturbed = spy  # type: ignore[method-assign]
    return seen


def test_freelb_starts_at_random_and_averages_k_perturbed_losses() -> None:
    config = FreeLBConfig(freelb_steps=3, freelb_init_mag=0.2, freelb_start_step=0)
    model = tiny().train()
    method = FreeLB({FreeLBConfig: config})
    method.setup(model, info())
    deltas = spy_perturbations(method)
    clean, term = freelb_term(method, model)
    assert len(deltas) == 3  # K perturbed passes, the clean one not among them
    mask = batch()["attention_mask"].bool()
    start = deltas[0][mask]
    assert start.abs().gt(0).all()  # a random start, not zero
    per_example = deltas[0].flatten(1).norm(dim=1)
    assert bool((per_example <= 0.2).all()) and bool((per_example > 0.05).all())
    (clean + term).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    assert method.hook is not None
    losses = []
    for delta in list(deltas):  # (the spy keeps appending)
        with method.hook.perturbed(delta):
            losses.append(torch.nn.functional.cross_entropy(model(**batch()).logits, LABELS))
    (sum(losses) / 3).backward()  # the clean loss has no weight in FreeLB's objective
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(got[name], param.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_freelb_reuses_the_dropout_masks_across_its_passes() -> None:
    """With a zero start and a zero step every pass is the clean one: under the same masks the
    K losses are equal and the term (their mean minus the clean loss) is exactly 0."""
    config = FreeLBConfig(
        freelb_steps=3, freelb_init_mag=0.0, freelb_step_size=0.0, freelb_start_step=0
    )
    model = dropout_model()
    method = FreeLB({FreeLBConfig: config})
    method.setup(model, info())
    _, term = freelb_term(method, model)
    assert float(term) == 0.0


def test_mixout_draws_one_mask_per_input_neuron_from_its_own_stream() -> None:
    model = tiny().train()
    method = Mixout({MixoutConfig: MixoutConfig(mixout_p=0.5)})
    method.setup(model, info())
    layer = model.bert.encoder.layer[0].intermediate.dense
    assert isinstance(layer, MixoutLinear)
    with torch.no_grad():
        layer.weight.add_(1.0)  # away from the pre-trained values
    seen: list[torch.Tensor] = []
    original = torch.nn.functional.linear

    def capture(x: torch.Tensor, weight: torch.Tensor, bias: Any = None) -> torch.Tensor:
        seen.append(weight.detach().clone())
        return original(x, weight, bias)

    torch.nn.functional.linear = capture  # type: ignore[assignment]
    try:
        x = torch.randn(2, layer.in_features)
        state = torch.get_rng_state()
        layer(x)
        assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    finally:
        torch.nn.functional.linear = original
    mixed = seen[0]
    at_target = torch.isclose(mixed, layer.mixout_target)
    # every column is all pre-trained or all mixed: one draw per input neuron
    assert bool((at_target.all(0) | (~at_target).all(0)).all())
    assert 0 < int(at_target.all(0).sum()) < layer.in_features


def test_mixout_turns_dropout_off_unless_asked_to_keep_it() -> None:
    model = dropout_model()
    Mixout().setup(model, info())
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)
    kept = dropout_model()
    Mixout({MixoutConfig: MixoutConfig(mixout_keep_dropout=True)}).setup(kept, info())
    assert all(m.p > 0 for m in kept.modules() if isinstance(m, torch.nn.Dropout))


def test_dps_alternates_full_and_masked_stages_per_tensor_on_linear_weights() -> None:
    model = tiny().train()
    method = DPS({DPSConfig: DPSConfig(dps_keep=0.3, dps_stage_ratio=0.2)})
    method.setup(model, info())  # 10 updates: stages of 2
    assert all(n.endswith(".weight") and p.dim() == 2 for n, p in method.params.items())
    assert not any(
        "embeddings" in n or "LayerNorm" in n or "classifier" in n for n in method.params
    )
    optimizer = make_optimizer(model, 1e-2, 0.0)
    masked_stage_moves = 0
    for step in range(8):
        before = {n: p.detach().clone() for n, p in method.params.items()}
        logits = model(**batch()).logits
        torch.nn.functional.cross_entropy(logits, LABELS).backward()
        stage_masked = method.masked_stage()
        grads_before = {n: p.grad.clone() for n, p in method.params.items()}  # type: ignore[union-attr]
        method.before_update(model)
        if stage_masked:
            for name, mask in method.masks.items():
                share = float(mask.float().mean())
                assert 0.29 <= share <= 0.36, (step, name, share)  # per tensor
                grad = method.params[name].grad
                assert grad is not None and torch.equal(grad, grads_before[name] * mask)
        optimizer.step()
        optimizer.zero_grad()
        method.after_step(model)
        if stage_masked:  # only the gradient is masked: Adam's momentum still moves the rest
            masked_stage_moves += sum(
                int(((method.params[n].detach() != before[n]) & ~m).sum())
                for n, m in method.masks.items()
            )
    assert [((s // 2) % 2 == 1) for s in range(8)] == [False, False, True, True] * 2
    assert masked_stage_moves > 0


def test_child_tuning_d_masks_the_transformer_layers_with_a_training_mode_fisher() -> None:
    model = dropout_model()
    batches = [{**batch(seed=s), "labels": LABELS} for s in range(3)]
    modes: list[bool] = []
    model.bert.encoder.layer[0].register_forward_hook(lambda m, i, o: modes.append(m.training))
    method = ChildTuning(
        {ChildTuningConfig: ChildTuningConfig(child_reserve=0.3, child_fisher_clip=1e-3)}
    )
    method.setup(model.eval(), info(train_batches=lambda: iter(batches)))
    assert modes == [True, True, True]  # dropout on, as the paper's code computes it
    assert not model.training  # the caller's mode is restored
    assert method.params and all("layer" in n for n in method.params)
    assert "bert.embeddings.word_embeddings.weight" not in method.params


def test_fisher_clips_each_parameters_gradient() -> None:
    from smartft.masks import fisher_information

    model = tiny().train()
    params = dict(model.named_parameters())
    batches = [{**batch(seed=s), "labels": LABELS} for s in range(2)]
    scores = fisher_information(model, params, iter(batches), False, clip=1e-3)
    for name, score in scores.items():
        assert float(score.sum()) <= 1e-6 * (1 + 1e-4), name  # mean of ‖clipped grad‖² ≤ clip²


def test_child_tuning_f_masks_every_gradient_the_head_included() -> None:
    model = tiny()
    method = ChildTuning({ChildTuningConfig: ChildTuningConfig(child_mode="F", child_reserve=0.5)})
    method.setup(model, info())
    model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
    method.before_update(model)
    assert set(model.classifier.weight.grad.unique().tolist()) == {0.0, 2.0}


def test_alice_label_term_moves_the_prediction_at_the_papers_radius() -> None:
    from smartft.methods.alice import Alice, AliceConfig
    from smartft.regularizer import SmartConfig

    def adversarial_gain(projection: str) -> float:
        model = tiny(seed=3).train()
        configs = {
            AliceConfig: AliceConfig(alice_adv_projection=projection),
            SmartConfig: SmartConfig(smart_lambda=0.0),
        }
        method = Alice(configs)  # type: ignore[arg-type]
        method.setup(model, info())
        inputs = {**batch(), "labels": LABELS}
        method.before_forward(model, inputs, lambda loss: None)
        logits = model(**batch()).logits
        clean = float(torch.nn.functional.cross_entropy(logits, LABELS))
        return float(method.loss_terms(model, inputs, logits)["loss_alice_adv"]) - clean

    assert abs(adversarial_gain("smart")) < 1e-4  # ε = 1e-5: the clean loss again
    assert adversarial_gain("unit") > 1e-3


def test_mtdnn_symmetric_kl_has_the_same_value_and_half_the_gradient_near_agreement() -> None:
    torch.manual_seed(0)
    q = torch.randn(8, 3)
    p = (q + 1e-3 * torch.randn(8, 3)).requires_grad_(True)
    full, detached = symmetric_kl(p, q), symmetric_kl_detached(p, q)
    torch.testing.assert_close(full, detached)
    (g_full,) = torch.autograd.grad(full, p)
    (g_half,) = torch.autograd.grad(detached, p)
    torch.testing.assert_close(g_half, g_full / 2, rtol=2e-2, atol=1e-9)


@pytest.mark.parametrize("value", ["full", "mtdnn"])
def test_kl_gradient_reaches_every_method_that_uses_the_symmetric_kl(value: str) -> None:
    from smartft.methods.r3f import R3F
    from smartft.methods.smart import Smart

    smart, r3f = Smart(), R3F()
    smart.setup(tiny(), info(kl_gradient=value))
    r3f.setup(tiny(), info(kl_gradient=value))
    assert smart.kl_gradient == r3f.kl_gradient == value
    expected = "sym_kl_mtdnn" if value == "mtdnn" else "sym_kl"
    assert smart.regularizer is not None
    assert smart.regularizer.outer(torch.zeros(2, 3)) == expected
