"""Tests that pin SMART's math on a tiny random model (CPU)."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

from smartft.losses import squared_error, symmetric_kl
from smartft.perturb import EmbeddingHook, norm, project
from smartft.regularizer import SmartConfig, SmartRegularizer
from smartft.teacher import BregmanConfig, make_teacher

from .conftest import SMART_FLAGS, train_args
from .test_engine import cli


def tiny_config(**overrides: Any) -> BertConfig:
    """A 2-layer, 16-wide BERT config over a 40-token vocabulary."""
    sizes = {
        "vocab_size": 40,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 24,
        "max_position_embeddings": 32,
    }
    return BertConfig(**{**sizes, **overrides})


def tiny(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = tiny_config(
        num_labels=num_labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    return BertForSequenceClassification(config).eval()


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (4, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 4:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def record_perturbations(reg: SmartRegularizer) -> list[torch.Tensor]:
    """Every perturbation the regularizer applies, in order."""
    captured: list[torch.Tensor] = []
    original = reg.hook.perturbed

    def spy(delta: torch.Tensor, *args: Any, **kwargs: Any) -> AbstractContextManager[None]:
        captured.append(delta.detach().clone())
        return original(delta, *args, **kwargs)

    reg.hook.perturbed = spy  # type: ignore[method-assign]
    return captured


def test_zero_perturbation_is_the_plain_forward_exactly() -> None:
    model, inputs = tiny(), batch()
    plain = model(**inputs).logits
    hook = EmbeddingHook(model)
    delta = torch.zeros(4, 9, 16)
    with hook.perturbed(delta):
        hooked = model(**inputs).logits
    assert torch.equal(plain, hooked)
    # re-feeding the full embedding output as inputs_embeds (the reference code) is NOT the same
    embeds = model.bert.embeddings(input_ids=inputs["input_ids"])
    reference = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits
    assert not torch.allclose(plain, reference)


def test_perturbation_lands_before_position_embeddings() -> None:
    model, inputs = tiny(), batch()
    hook = EmbeddingHook(model)
    seen: list[torch.Tensor] = []
    handle = model.bert.embeddings.word_embeddings.register_forward_hook(
        lambda m, i, o: seen.append(o)
    )
    delta = torch.full((4, 9, 16), 0.5)
    with hook.perturbed(delta):
        model(**inputs)
    handle.remove()
    clean = model.bert.embeddings.word_embeddings(inputs["input_ids"])
    # hooks run in registration order: the first hook adds delta, the probe sees the sum
    assert torch.allclose(seen[0], clean + 0.5)


@pytest.mark.parametrize("kind", ["inf", "l2"])
@pytest.mark.parametrize("scope", ["token", "example"])
def test_ball_projection_keeps_every_offset_within_eps(kind: str, scope: str) -> None:
    delta = torch.randn(3, 5, 7) * 10
    projected = project(delta, "ball", 0.1, kind, scope)
    assert (norm(projected, kind, scope) <= 0.1 + 1e-6).all()
    small = torch.randn(3, 5, 7) * 1e-4  # already inside: unchanged
    assert torch.allclose(project(small, "ball", 0.1, kind, scope), small)


@pytest.mark.parametrize("kind", ["inf", "l2"])
def test_unit_projection_gives_unit_norm(kind: str) -> None:
    delta = torch.randn(3, 5, 7) * 1e-3
    assert torch.allclose(
        norm(project(delta, "unit", 1e-5, kind, "token"), kind, "token"),
        torch.ones(3, 5, 1),
        atol=1e-5,
    )


@pytest.mark.parametrize("projection", ["ball", "unit"])
def test_padding_positions_stay_zero(projection: str) -> None:
    model, inputs = tiny(), batch()
    reg = SmartRegularizer(
        model, SmartConfig(smart_projection=projection, smart_eps=1e-2, smart_steps=2)
    )
    captured = record_perturbations(reg)
    reg.penalty(inputs, model(**inputs).logits)
    pad = inputs["attention_mask"] == 0
    for delta in captured:
        assert torch.all(delta[pad] == 0)
        assert torch.any(delta[~pad] != 0)


def test_ascent_beats_a_random_direction_of_the_same_norm() -> None:
    model, inputs = tiny(seed=1), batch(1)
    clean = model(**inputs).logits.detach()
    reg = SmartRegularizer(
        model, SmartConfig(smart_eps=0.05, smart_step_size=0.05, smart_noise_std=1e-3), seed=0
    )
    captured = record_perturbations(reg)
    value = reg.penalty(inputs, clean)
    assert value is not None
    adversarial = float(value.detach())
    final = captured[-1]
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    wins = 0
    for seed in range(10):
        random = torch.randn(final.shape, generator=torch.Generator().manual_seed(seed)) * mask
        random = (
            random / norm(random, "inf", "token").clamp_min(1e-12) * norm(final, "inf", "token")
        )
        with reg.hook.perturbed(random):
            wins += adversarial > float(symmetric_kl(model(**inputs).logits, clean).detach())
    assert wins == 10


def test_regression_penalty_shape_and_value() -> None:
    p = torch.tensor([[1.0], [2.0], [4.0]])
    q = torch.tensor([1.5, 2.0, 3.0])
    assert squared_error(p, q).shape == ()
    assert squared_error(p, q).item() == pytest.approx((0.25 + 0 + 1) / 3)
    model, inputs = tiny(num_labels=1), batch()
    model.config.problem_type = "regression"
    reg = SmartRegularizer(model, SmartConfig(smart_eps=0.1), regression=True)
    value = reg.penalty(inputs, model(**inputs).logits)
    assert value is not None and value.shape == () and value.item() > 0


def test_non_finite_ascent_gradient_skips_the_term() -> None:
    model, inputs = tiny(), batch()
    logits = model(**inputs).logits
    reg = SmartRegularizer(model, SmartConfig())
    bad = logits.detach().clone()
    bad[0, 0] = float("nan")
    assert reg.penalty(inputs, bad) is None and reg.skipped == 1
    assert reg(inputs, bad).item() == 0.0 and reg.skipped == 2
    assert reg.penalty(inputs, logits) is not None and reg.skipped == 2


def test_teacher_update_and_beta_schedule_by_hand() -> None:
    model = tiny()
    teacher = make_teacher(
        model,
        BregmanConfig(bregman_beta=0.5, bregman_beta_final=0.9, bregman_warmup_ratio=0.2),
        total_steps=10,
    )
    assert teacher.warmup_steps == 2
    weight = model.classifier.weight
    expected = weight.detach().clone()
    for step in range(4):
        with torch.no_grad():
            weight.add_(1.0)
        beta = 0.5 if step < 2 else 0.9
        assert teacher.current_beta() == beta
        teacher.update(model)
        expected = beta * expected + (1 - beta) * weight.detach()
        assert torch.allclose(teacher.model.classifier.weight, expected, atol=1e-6)
    vanilla = make_teacher(model, BregmanConfig(bregman_mode="vanilla"), total_steps=10)
    with torch.no_grad():
        weight.add_(1.0)
    vanilla.update(model)
    assert torch.equal(vanilla.model.classifier.weight, weight)


def test_teacher_is_frozen_and_unhooked() -> None:
    model = tiny()
    SmartRegularizer(model, SmartConfig())  # hooks the student first
    teacher = make_teacher(model, BregmanConfig(), total_steps=10)
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert not teacher.model.bert.embeddings.word_embeddings._forward_hooks
    inputs = batch()
    student_logits = model(**inputs).logits
    value = teacher.bregman(inputs, student_logits, "sym_kl")
    assert value.item() == pytest.approx(0.0, abs=1e-10)  # identical weights, no dropout
    value.backward()


def test_lambda_and_mu_zero_reproduce_plain_bit_for_bit(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file

    plain, smart = tmp_path / "plain", tmp_path / "smart"
    assert cli(train_args(tiny_model, glue_dir, plain), capsys)[0] == 0
    assert (
        cli(
            train_args(
                tiny_model,
                glue_dir,
                smart,
                "--method",
                "smart",
                "--smart_lambda",
                "0",
                "--bregman_mu",
                "0",
            ),
            capsys,
        )[0]
        == 0
    )
    a, b = load_file(plain / "model.safetensors"), load_file(smart / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_smart_run_logs_its_terms(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "smart"
    assert (
        cli(
            train_args(
                tiny_model,
                glue_dir,
                out,
                *SMART_FLAGS,
            ),
            capsys,
        )[0]
        == 0
    )
    line = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    for key in (
        "task_loss",
        "loss_smart",
        "loss_bregman",
        "smart_rs",
        "bregman_d",
        "smart_skipped",
        "smart_delta_norm",
    ):
        assert key in line
    assert line["loss"] == pytest.approx(
        line["task_loss"] + line["loss_smart"] + line["loss_bregman"], rel=1e-5
    )
    assert line["smart_delta_norm"] <= 1e-2 + 1e-7
    results = json.loads((out / "all_results.json").read_text())
    assert results["smart_skipped_total"] == 0
    AutoModelForSequenceClassification.from_pretrained(out)


def test_method_state_restores_the_teacher_and_noise(tmp_path: Path) -> None:
    from smartft.methods import SetupInfo
    from smartft.methods.smart import Smart

    def fresh() -> tuple[Smart, BertForSequenceClassification]:
        model = tiny()
        configs = {SmartConfig: SmartConfig(), BregmanConfig: BregmanConfig(bregman_fraction=0.5)}
        method = Smart(configs)
        method.setup(model, SetupInfo(total_steps=10, regression=False, seed=1))
        return method, model

    method, model = fresh()
    inputs = batch()
    for _ in range(3):
        method.loss_terms(model, inputs, model(**inputs).logits)
        with torch.no_grad():
            model.classifier.weight.add_(0.1)
        method.after_step(model)
    method.save(tmp_path)
    restored, _ = fresh()
    restored.load(tmp_path)
    assert restored.teacher is not None and method.teacher is not None
    assert restored.teacher.step == 3
    for a, b in zip(
        restored.teacher.model.parameters(), method.teacher.model.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    assert restored.regularizer is not None and method.regularizer is not None
    device = torch.device("cpu")
    assert torch.equal(
        torch.randn(5, generator=restored.regularizer.generator(device)),
        torch.randn(5, generator=method.regularizer.generator(device)),
    )
    assert restored.teacher_rows is not None and method.teacher_rows is not None
    assert torch.equal(restored.teacher_rows.get_state(), method.teacher_rows.get_state())


def smart_gradients(
    model: BertForSequenceClassification, config: SmartConfig, straightforward: bool
) -> dict[str, torch.Tensor]:
    """∇θ (task-free) λ R_s on one batch, through the optimized path or with both optimizations
    (clean-embedding reuse, frozen ascent) switched off."""
    reg = SmartRegularizer(model, config, seed=5)
    if straightforward:
        reg.hook._reusable = lambda ids: None  # type: ignore[method-assign]
    inputs = batch()
    logits = model(**inputs).logits
    import smartft.regularizer as smart_module

    original = smart_module.frozen
    if straightforward:
        from contextlib import nullcontext

        smart_module.frozen = lambda model: nullcontext()  # type: ignore[assignment]
    try:
        value = reg(inputs, logits) + logits.square().mean()  # a clean-branch term as well
    finally:
        smart_module.frozen = original
        reg.close()
    value.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


def test_optimized_gradient_equals_the_straightforward_one() -> None:
    config = SmartConfig(smart_lambda=3.0, smart_eps=1e-2, smart_step_size=1e-1, smart_steps=2)
    model = tiny()
    fast = smart_gradients(model, config, straightforward=False)
    slow = smart_gradients(model, config, straightforward=True)
    assert fast.keys() == slow.keys() and "bert.embeddings.word_embeddings.weight" in fast
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-5, atol=1e-7, msg=name)


def test_ascent_runs_with_frozen_parameters_and_leaves_them_trainable() -> None:
    model = tiny()
    reg = SmartRegularizer(model, SmartConfig(), seed=1)
    seen: list[bool] = []
    model.classifier.register_forward_hook(
        lambda module, args, out: seen.append(module.weight.requires_grad)
    )
    inputs = batch()
    reg(inputs, model(**inputs).logits)
    assert seen == [True, False, True]  # clean, ascent, adversarial forward
    assert all(p.requires_grad for p in model.parameters())


def test_clean_embedding_output_is_reused_only_for_the_same_ids() -> None:
    model = tiny()
    hook = EmbeddingHook(model)
    inputs = batch()
    model(**inputs)
    lookups: list[torch.Tensor] = []
    hook.embeddings.register_forward_hook(lambda m, a, out: lookups.append(out))
    zero = torch.zeros(4, 9, 16)
    with hook.perturbed(zero):
        same = model(**inputs).logits
    assert hook._reusable(inputs["input_ids"]) is not None
    other = {**inputs, "input_ids": inputs["input_ids"].flip(0)}
    assert hook._reusable(other["input_ids"]) is None
    hook.clear()
    assert hook._reusable(inputs["input_ids"]) is None
    torch.testing.assert_close(same, model(**inputs).logits)


def test_fast_mode_regularizes_a_random_subset_cut_to_its_length() -> None:
    model = tiny()
    reg = SmartRegularizer(model, SmartConfig(smart_fraction=0.5), seed=3)
    captured = record_perturbations(reg)
    inputs = batch()
    value = reg(inputs, model(**inputs).logits)
    assert value.item() > 0
    assert [tuple(d.shape[:1]) for d in captured] == [(2,), (2,)]
    rows_lengths = {int(inputs["attention_mask"][i].sum()) for i in range(4)}
    assert captured[0].shape[1] in rows_lengths  # trimmed to the subset's longest real row
    exact = SmartRegularizer(tiny(), SmartConfig(smart_fraction=1.0), seed=3)
    seen = record_perturbations(exact)
    exact(inputs, model(**inputs).logits)
    assert all(d.shape[:2] == (4, 9) for d in seen)
    with pytest.raises(Exception, match="smart_fraction"):
        SmartConfig(smart_fraction=0.0)


def test_fast_mode_bregman_runs_the_teacher_on_a_random_subset() -> None:
    from smartft.methods import SetupInfo
    from smartft.methods.smart import Smart

    def teacher_inputs(fraction: float) -> list[torch.Tensor]:
        model = tiny()
        configs = {
            SmartConfig: SmartConfig(smart_lambda=0.0),
            BregmanConfig: BregmanConfig(bregman_fraction=fraction),
        }
        method = Smart(configs)
        method.setup(model, SetupInfo(total_steps=10, regression=False, seed=1))
        assert method.teacher is not None
        seen: list[torch.Tensor] = []
        method.teacher.model.register_forward_pre_hook(
            lambda _, args, kwargs: seen.append(kwargs["input_ids"]), with_kwargs=True
        )
        inputs = batch()
        with torch.no_grad():
            model.classifier.weight[0].add_(0.5)  # student and teacher differ: D_Breg > 0
        terms = method.loss_terms(model, inputs, model(**inputs).logits)
        assert terms["loss_bregman"].item() > 0
        return seen

    inputs = batch()
    (full,) = teacher_inputs(1.0)
    assert torch.equal(full, inputs["input_ids"])
    (part,) = teacher_inputs(0.5)
    assert part.shape[0] == 2  # two of the four rows, cut to their longest real length
    ids = inputs["input_ids"][:, : part.shape[1]]
    rows = [i for i in range(4) if any(torch.equal(row, ids[i]) for row in part)]
    assert len(rows) == 2
    assert part.shape[1] == max(int(inputs["attention_mask"][i].sum()) for i in rows)
    with pytest.raises(Exception, match="bregman_fraction"):
        BregmanConfig(bregman_fraction=1.5)


@pytest.mark.parametrize(("num_labels", "fraction"), [(2, 1.0), (1, 1.0), (3, 0.5)])
def test_low_memory_mode_gives_the_exact_gradient_and_random_state(
    num_labels: int, fraction: float
) -> None:
    """The adversarial branch back-propagated after the clean one (dropout replayed) gives the
    straightforward order's loss, gradient and generator state, with dropout on."""
    from smartft.methods import SetupInfo
    from smartft.methods.smart import Smart

    def step(low_memory: bool) -> tuple[list[float], list[torch.Tensor], torch.Tensor]:
        model = tiny(num_labels)
        model.config.hidden_dropout_prob = 0.1
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.1
        model.train()
        config = SmartConfig(smart_low_memory=low_memory, smart_eps=1e-2, smart_fraction=fraction)
        method = Smart({SmartConfig: config})
        regression = num_labels == 1
        method.setup(model, SetupInfo(total_steps=10, regression=regression, seed=1))
        inputs = batch()
        labels = torch.rand(4) if regression else torch.tensor([0, 1, 1, 0]) % num_labels
        torch.manual_seed(5)
        method.before_forward(model, {**inputs, "labels": labels}, lambda loss: loss.backward())
        logits = model(**inputs).logits
        terms = method.loss_terms(model, {**inputs, "labels": labels}, logits)
        sum(terms.values()).backward()  # type: ignore[union-attr]
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return [float(t.detach()) for t in terms.values()], grads, torch.get_rng_state()

    values, grads, state = step(low_memory=False)
    values_low, grads_low, state_low = step(low_memory=True)
    assert values == pytest.approx(values_low, rel=1e-5)
    assert len(grads) == len(grads_low) > 0
    for a, b in zip(grads, grads_low, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert torch.equal(state, state_low)


def test_low_memory_mode_is_refused_on_several_processes_and_by_alice() -> None:
    from smartft.methods import SetupInfo, get_method
    from smartft.methods.smart import Smart

    method = Smart({SmartConfig: SmartConfig(smart_low_memory=True)})
    with pytest.raises(Exception, match="one process"):
        method.setup(tiny(), SetupInfo(10, False, 1, num_processes=2))
    alice = get_method("alice")({SmartConfig: SmartConfig(smart_low_memory=True)})
    with pytest.raises(Exception, match="ALICE"):
        alice.setup(tiny(), SetupInfo(10, False, 1))


def test_low_memory_run_trains_like_the_exact_one(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end through the recipe, with gradient accumulation (the second backward goes
    through the loop's own scaled backward): the same logged losses as the exact order."""
    flags = [
        *SMART_FLAGS,
        "--gradient_accumulation_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
    ]
    logs = []
    for name, extra in (("exact", []), ("low", ["--smart_low_memory"])):
        out = tmp_path / name
        assert cli(train_args(tiny_model, glue_dir, out, *flags, *extra), capsys)[0] == 0
        logs.append([json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()])
    exact, low = logs
    assert len(exact) == len(low) > 1
    for a, b in zip(exact, low, strict=True):
        for key in ("loss", "loss_smart", "loss_bregman", "eval_accuracy"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
