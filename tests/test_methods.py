"""The peer methods: each one's defining behaviour on a tiny random model, and every method end
to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from smartft.methods import METHODS, SetupInfo, get_method
from smartft.methods.child_tuning import ChildTuning, ChildTuningConfig
from smartft.methods.l2sp import L2SP, L2SPConfig
from smartft.methods.lnsr import LNSR, LNSRConfig
from smartft.methods.mixout import Mixout, MixoutConfig, MixoutLinear
from smartft.methods.r3f import R3F, R4F, R3FConfig

from .conftest import train_args
from .test_engine import cli
from .test_smart import batch, tiny

LABELS = torch.tensor([0, 1, 1, 0])


def info(**extra: object) -> SetupInfo:
    return SetupInfo(total_steps=10, regression=False, seed=0, **extra)  # type: ignore[arg-type]


def one_step(model: torch.nn.Module, method: object, lr: float = 0.1) -> None:
    """A plain SGD update through the method protocol (loss terms, before_update, after_step)."""
    inputs = batch()
    logits = model(**inputs).logits
    loss = torch.nn.functional.cross_entropy(logits, LABELS)
    terms = method.loss_terms(model, {**inputs, "labels": LABELS}, logits)  # type: ignore[attr-defined]
    (loss + sum(terms.values())).backward()
    method.before_update(model)  # type: ignore[attr-defined]
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is not None:
                param -= lr * param.grad
    model.zero_grad()
    method.after_step(model)  # type: ignore[attr-defined]


def test_r3f_runs_no_ascent_pass_and_one_extra_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny().train()
    method = R3F({R3FConfig: R3FConfig(r3f_eps=1e-2)})
    method.setup(model, info())
    forwards: list[int] = []
    model.classifier.register_forward_hook(lambda *a: forwards.append(1))

    def no_grad_calls(*args: object, **kwargs: object) -> None:
        raise AssertionError("R3F must not run an ascent (torch.autograd.grad) pass")

    monkeypatch.setattr(torch.autograd, "grad", no_grad_calls)
    inputs = {**batch(), "labels": LABELS}
    terms = method.loss_terms(model, inputs, model(**batch()).logits)
    assert len(forwards) == 2 and terms["loss_r3f"].item() > 0
    terms["loss_r3f"].backward()


def test_r3f_uniform_noise_is_bounded_by_eps() -> None:
    method = R3F({R3FConfig: R3FConfig(r3f_noise="uniform", r3f_eps=0.5)})
    method.setup(tiny(), info())
    noise = method.noise((1000,), torch.device("cpu"))
    assert noise.abs().max() <= 0.5 and noise.abs().max() > 0.4


@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_r4f_holds_the_output_layer_spectral_norm_at_one(scale: float) -> None:
    # scale 1: a fresh head sits far below norm 1 (where a mere <= 1 bound never acts and R4F
    # silently equals R3F); scale 50: far above.
    model = tiny().train()
    with torch.no_grad():
        model.classifier.weight.mul_(scale)

    def norm() -> float:
        return float(torch.linalg.matrix_norm(model.classifier.weight.detach(), ord=2))

    assert abs(norm() - 1) > 0.3
    method = R4F({R3FConfig: R3FConfig()})
    method.setup(model, info())
    norms = []
    for _ in range(3):
        norms.append(norm())
        one_step(model, method, lr=5.0)
    norms.append(norm())
    assert norms == pytest.approx([1.0] * 4)


def test_child_tuning_d_changes_only_the_child() -> None:
    model = tiny().train()
    batches = [{**batch(seed=s), "labels": LABELS} for s in range(3)]
    method = ChildTuning({ChildTuningConfig: ChildTuningConfig(child_reserve=0.2)})
    method.setup(model, info(train_batches=lambda: iter(batches)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    one_step(model, method)
    for name, mask in method.masks.items():
        moved = (dict(model.named_parameters())[name] != before[name]).detach()
        assert not bool((moved & ~mask).any()), name
    share = sum(int(m.sum()) for m in method.masks.values()) / sum(
        m.numel() for m in method.masks.values()
    )
    assert 0.19 <= share <= 0.25  # ties at the threshold may add a few
    assert model.classifier.weight.ne(before["classifier.weight"]).all()  # the head is free


def test_child_tuning_f_masks_and_rescales_gradients() -> None:
    model = tiny()
    method = ChildTuning({ChildTuningConfig: ChildTuningConfig(child_mode="F", child_reserve=0.5)})
    method.setup(model, info())
    weight = model.bert.encoder.layer[0].intermediate.dense.weight
    weight.grad = torch.ones_like(weight)
    method.before_update(model)
    values = set(weight.grad.unique().tolist())
    assert values == {0.0, 2.0}
    assert 0.4 < float((weight.grad > 0).float().mean()) < 0.6


def test_mixout_p1_uses_pretrained_weights_and_eval_uses_the_expectation() -> None:
    model = tiny().train()
    method = Mixout({MixoutConfig: MixoutConfig(mixout_p=1.0)})
    method.setup(model, info())
    layer = model.bert.encoder.layer[0].intermediate.dense
    assert isinstance(layer, MixoutLinear) and not isinstance(model.classifier, MixoutLinear)
    pretrained = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    x = torch.randn(3, layer.in_features)
    expected = torch.nn.functional.linear(x, pretrained, layer.bias)
    torch.testing.assert_close(layer(x), expected)
    layer.eval()
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    assert not any("mixout_target" in key for key in model.state_dict())


def test_mixout_is_unbiased() -> None:
    torch.manual_seed(0)
    from smartft.methods.mixout import mixout

    weight, target = torch.full((200, 200), 2.0), torch.zeros(200, 200)
    mixed = mixout(weight, target, 0.9, torch.rand(200, 200) >= 0.9)
    assert abs(float(mixed.mean()) - 2.0) < 0.1
    assert set(mixed.unique().tolist()) == {0.0, 20.0}


def test_l2sp_penalty_matches_by_hand() -> None:
    model = tiny()
    method = L2SP({L2SPConfig: L2SPConfig(l2sp_alpha=0.3, l2sp_beta=0.02)})
    method.setup(model, info())
    encoder = model.bert.encoder.layer[0].output.dense.weight
    with torch.no_grad():
        encoder[0, 0] += 2.0
        encoder[1, 1] -= 1.0
    head = sum(float(p.detach().pow(2).sum()) for p in model.classifier.parameters())
    expected = 0.3 * 0.5 * (2.0**2 + 1.0**2) + 0.02 * 0.5 * head
    inputs = {**batch(), "labels": LABELS}
    term = method.loss_terms(model, inputs, model(**batch()).logits)["loss_l2sp"]
    assert term.item() == pytest.approx(expected, rel=1e-5)


def test_lnsr_penalty_is_zero_without_noise_and_grows_with_it() -> None:
    # With dropout on, as in real fine-tuning: the noised forward must replay the clean forward's
    # masks, or the penalty measures two dropout draws instead of the noise.
    values = []
    for sigma in (0.0, 1e-3, 1e-1):
        model = tiny().train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.3
        method = LNSR({LNSRConfig: LNSRConfig(lnsr_layer=1, lnsr_sigma=sigma)})
        method.setup(model, info())
        inputs = {**batch(), "labels": LABELS}
        method.before_forward(model, inputs, lambda loss: loss.backward())
        logits = model(**batch()).logits
        after_clean = torch.get_rng_state()
        term = method.loss_terms(model, inputs, logits)["loss_lnsr"]
        values.append(term.item())
        assert torch.equal(torch.get_rng_state(), after_clean)  # the run's stream is untouched
    assert values[0] == 0.0 and 0 < values[1] < values[2]


def test_lnsr_needs_the_clean_forwards_random_state() -> None:
    model = tiny().train()
    method = LNSR({LNSRConfig: LNSRConfig(lnsr_layer=1)})
    method.setup(model, info())
    with pytest.raises(RuntimeError, match="before_forward"):
        method.loss_terms(model, {**batch(), "labels": LABELS}, model(**batch()).logits)


METHOD_FLAGS = {
    "r3f": ["--r3f_eps", "1e-3"],
    "r4f": [],
    "child_tuning": ["--child_fisher_batches", "2"],
    "mixout": [],
    "l2sp": ["--weight_decay", "0"],
    "lnsr": ["--lnsr_layer", "1"],
    "alice": ["--alice_plus_plus", "true"],
    "dps": [],
    "freelb": ["--freelb_start_step", "1"],
}


@pytest.mark.parametrize("name", sorted(METHOD_FLAGS))
def test_every_method_trains_from_the_cli(
    name: str,
    tiny_model: str,
    glue_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / name
    code, _, err = cli(
        [*train_args(tiny_model, glue_dir, out), "--method", name, *METHOD_FLAGS[name]], capsys
    )
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["method"] == name and results["eval_accuracy"] is not None
    assert name in METHODS and get_method(name).name == name


def test_alice_has_a_virtual_and_a_label_adversarial_term() -> None:
    from smartft.methods.alice import Alice, AliceConfig
    from smartft.regularizer import SmartConfig

    model = tiny().train()
    smart = SmartConfig(smart_eps=1e-2, smart_step_size=1e-2)
    method = Alice({SmartConfig: smart, AliceConfig: AliceConfig(alice_adv_lambda=2.0)})
    method.setup(model, info())
    passes: list[int] = []
    model.classifier.register_forward_hook(lambda *a: passes.append(1))
    inputs = {**batch(), "labels": LABELS}
    logits = model(**batch()).logits
    terms = method.loss_terms(model, inputs, logits)
    assert set(terms) == {"loss_alice_virtual", "loss_alice_adv"}
    assert len(passes) == 5  # clean + (ascent + adversarial) per term
    clean_task = torch.nn.functional.cross_entropy(logits, LABELS)
    # the label term is the task loss at a small perturbation: close to, above the clean one
    adv = terms["loss_alice_adv"].item() / 2.0
    assert adv >= clean_task.item() - 1e-4 and adv == pytest.approx(clean_task.item(), abs=0.05)


def test_alice_plus_plus_perturbs_a_random_layer() -> None:
    from smartft.methods.alice import Alice, AliceConfig
    from smartft.perturb import LayerInputHook
    from smartft.regularizer import SmartConfig

    model = tiny().train()
    method = Alice({SmartConfig: SmartConfig(), AliceConfig: AliceConfig(alice_plus_plus=True)})
    method.setup(model, info())
    assert method.regularizer is not None
    hook = method.regularizer.hook
    assert isinstance(hook, LayerInputHook)
    chosen = set()
    for _ in range(12):
        method.loss_terms(model, {**batch(), "labels": LABELS}, model(**batch()).logits)
        chosen.add(hook.index)
    assert chosen == {0, 1}


def test_freelb_gradient_is_the_average_of_the_k_perturbed_losses() -> None:
    from smartft.methods.freelb import FreeLB, FreeLBConfig

    config = FreeLBConfig(
        freelb_steps=3, freelb_step_size=0.5, freelb_start_step=0, freelb_init_mag=0.0
    )
    model = tiny().train()
    method = FreeLB({FreeLBConfig: config})
    method.setup(model, info())
    assert method.hook is not None
    deltas: list[torch.Tensor] = []
    original = method.hook.perturbed

    def spy(delta: torch.Tensor, *args: object, **kwargs: object) -> object:
        deltas.append(delta.detach().clone())
        return original(delta, *args, **kwargs)  # type: ignore[arg-type]

    method.hook.perturbed = spy  # type: ignore[method-assign]
    inputs = batch()
    method.before_forward(model, inputs, lambda loss: None)
    logits = model(**inputs).logits
    loss = torch.nn.functional.cross_entropy(logits, LABELS)
    terms = method.loss_terms(model, {**inputs, "labels": LABELS}, logits)
    (loss + sum(terms.values())).backward()  # the loop adds the clean loss with weight 1
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    assert len(deltas) == 2
    assert deltas[1].norm() > deltas[0].norm() > 0  # two ascent steps from zero
    method.hook.perturbed = original  # type: ignore[method-assign]
    losses = [torch.nn.functional.cross_entropy(model(**inputs).logits, LABELS)]
    for delta in deltas:
        with method.hook.perturbed(delta):
            losses.append(torch.nn.functional.cross_entropy(model(**inputs).logits, LABELS))
    (sum(losses) / 3).backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(got[name], param.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_freelb_waits_for_its_start_step() -> None:
    from smartft.methods.freelb import FreeLB, FreeLBConfig

    model = tiny().train()
    method = FreeLB({FreeLBConfig: FreeLBConfig(freelb_start_step=2)})
    method.setup(model, info())
    inputs = {**batch(), "labels": LABELS}
    method.before_forward(model, inputs, lambda loss: None)
    assert method.loss_terms(model, inputs, model(**batch()).logits) == {}
    method.after_step(model)
    method.after_step(model)
    method.before_forward(model, inputs, lambda loss: None)
    assert "loss_freelb" in method.loss_terms(model, inputs, model(**batch()).logits)
