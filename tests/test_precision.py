"""Mixed precision: flags, where autocast applies, float32 losses, scaled inner gradients, and the
warning when a perturbation is below what the working precision represents."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from smartft.methods import SetupInfo, get_method
from smartft.perturb import ascend
from smartft.precision import (
    Precision,
    PrecisionWarning,
    choose,
    embedding_scale,
    radius_warning,
    recorded_warnings,
)
from smartft.step import train_step

from .conftest import train_args
from .test_engine import cli, events
from .test_smart import batch, tiny

BF16 = Precision(torch.bfloat16)
LABELS = torch.tensor([0, 1, 1, 0])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"fp16": True}, "--fp16 needs a CUDA GPU"),
        ({"tf32": True}, "--tf32 applies to NVIDIA GPUs"),
        ({"bf16": True, "fp16": True}, "exclude each other"),
    ],
)
def test_flags_a_cpu_cannot_honour_are_refused(flags: dict[str, bool], message: str) -> None:
    from smartft.errors import ConfigError

    options = {"bf16": False, "fp16": False, "tf32": None, **flags}
    with pytest.raises(ConfigError, match=message):
        choose(options["bf16"], options["fp16"], options["tf32"], cuda=False)  # type: ignore[arg-type]


def test_fp16_on_the_cli_is_one_clear_error(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(train_args(tiny_model, glue_dir, tmp_path / "x", "--fp16"), capsys)
    assert code == 2 and "--fp16 needs a CUDA GPU" in err and "Traceback" not in err


class Accelerator:
    """Just enough of accelerate's Accelerator for `train_step` on one process."""

    sync_gradients = True
    scaler = None

    def accumulate(self, model: object) -> object:
        import contextlib

        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()  # type: ignore[no-untyped-call]

    def clip_grad_norm_(self, params: object, limit: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["smart", "r3f", "alice"])
def test_every_forward_of_a_step_runs_in_bf16_and_the_losses_in_float32(method: str) -> None:
    """The clean pass, the method's perturbed passes and SMART's teacher all see bf16 matrix
    products; the loss and the terms come out in float32, the weights stay float32."""
    model = tiny().train()
    instance = get_method(method)()
    with BF16.autocast():
        instance.setup(model, SetupInfo(10, False, 0, precision=BF16))
    dtypes: list[torch.dtype] = []
    models = [model]
    teacher = getattr(instance, "teacher", None)
    if teacher is not None:
        models.append(teacher.model)
    for each in models:
        each.classifier.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    out = train_step(
        model, model, {**batch(), "labels": LABELS}, instance, Accelerator(), optimizer,
        1.0, False, BF16,
    )  # fmt: skip
    expected_passes = {"smart": 4, "r3f": 2, "alice": 5}[method]  # clean, ascent(s), adversarial
    assert len(dtypes) == expected_passes and set(dtypes) == {torch.bfloat16}
    assert out.loss.dtype == torch.float32 and out.task_loss.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in out.terms.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert out.finite


def test_the_inner_ascent_takes_the_same_step_whatever_the_gradient_scale() -> None:
    model = tiny()
    inputs = batch()
    from smartft.perturb import EmbeddingHook

    hook = EmbeddingHook(model)
    target = model(**inputs).logits.detach()

    def forward(delta: torch.Tensor) -> torch.Tensor:
        with hook.perturbed(delta):
            return model(**inputs).logits  # type: ignore[no-any-return]

    def loss(out: torch.Tensor) -> torch.Tensor:
        return (out - target).pow(2).sum()

    start = torch.randn(4, 9, 16, generator=torch.Generator().manual_seed(0)) * 1e-3
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    common = {"steps": 2, "step_size": 1e-2, "projection": "ball", "eps": 1e-1}
    one = ascend(forward, start, mask, loss, kind="inf", scope="token", **common)  # type: ignore[arg-type]
    scaled = ascend(forward, start, mask, loss, kind="inf", scope="token", scale=2.0**16, **common)  # type: ignore[arg-type]
    assert one is not None and scaled is not None
    torch.testing.assert_close(one, scaled)


def test_the_radius_warning_names_the_flag_and_the_floor() -> None:
    message = radius_warning("--smart_eps", 1e-5, 0.234, torch.bfloat16)
    assert message is not None and "--smart_eps = 1e-05" in message and "bf16" in message
    assert radius_warning("--smart_eps", 1e-2, 0.234, torch.bfloat16) is None
    assert radius_warning("--smart_eps", 1e-5, 0.234, torch.float32) is None
    assert radius_warning("--smart_eps", 1e-5, 0.234, torch.float16) is not None


@pytest.mark.parametrize(
    ("method", "tiny_size", "fine_size"),
    [
        ("smart", {"smart_eps": 1e-5}, {"smart_eps": 1e-1}),
        ("alice", {"smart_eps": 1e-5}, {"smart_eps": 1e-1}),
        ("r3f", {"r3f_eps": 1e-5}, {"r3f_eps": 1e-1}),
        ("r4f", {"r3f_eps": 1e-5}, {"r3f_eps": 1e-1}),
        ("freelb", {"freelb_step_size": 1e-4}, {"freelb_step_size": 10.0}),
        ("lnsr", {"lnsr_sigma": 1e-5}, {"lnsr_sigma": 1.0}),
    ],
)
def test_each_perturbing_method_warns_when_its_size_is_lost_in_bf16(
    method: str, tiny_size: dict[str, float], fine_size: dict[str, float]
) -> None:
    from smartft.config import resolve

    def setup_warnings(size: dict[str, float], precision: Precision) -> list[str]:
        run = resolve({"method": method, **size})
        instance = get_method(method)(run.methods)
        batches = [{**batch(), "labels": LABELS}]
        info = SetupInfo(10, False, 0, train_batches=lambda: iter(batches), precision=precision)
        with recorded_warnings() as found:
            instance.setup(tiny().train(), info)
        return found

    assert len(setup_warnings(tiny_size, BF16)) == 1
    assert setup_warnings(fine_size, BF16) == []
    assert setup_warnings(tiny_size, Precision()) == []


def test_embedding_scale_is_the_median_row_infinity_norm() -> None:
    model = tiny()
    weight = model.get_input_embeddings().weight.detach()
    assert embedding_scale(model) == pytest.approx(float(weight.abs().amax(-1).median()))


def test_recorded_warnings_keeps_precision_warnings_once_and_passes_others_on() -> None:
    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        with recorded_warnings() as found:
            warnings.warn("small", PrecisionWarning, stacklevel=1)
            warnings.warn("small", PrecisionWarning, stacklevel=1)
            warnings.warn("other", UserWarning, stacklevel=1)
    assert found == ["small"]
    assert [str(w.message) for w in outer] == ["other"]


def test_a_bf16_run_records_its_precision_and_the_warning(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bf16"
    args = train_args(tiny_model, glue_dir, out, "--bf16", "--method", "smart")
    code, _, err = cli(args, capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["precision"] == "bf16"
    assert any("--smart_eps = 1e-05" in w for w in results["warnings"])
    logged = events(out)
    told = [str(e["message"]) for e in logged if e["event"] == "warning"]
    assert any("--smart_eps" in m for m in told) and logged[0]["event"] == "warning"
    train = [e for e in logged if e["event"] == "train"]
    assert train and all(e["smart_rs"] is not None for e in train)
    assert "warning: --smart_eps = 1e-05" in err
    # float32 after bf16 in the same process (accelerate's own setting could not change)
    code, _, err = cli(train_args(tiny_model, glue_dir, tmp_path / "fp32"), capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "fp32" / "all_results.json").read_text())["precision"] == (
        "float32"
    )


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_support_warns_with_the_measured_factor(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import smartft.precision

    monkeypatch.setattr(smartft.precision, "native_cpu_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choose(True, False, None, cuda=False)
    said = [str(w.message) for w in caught if issubclass(w.category, PrecisionWarning)]
    if native:
        assert said == []
    else:
        assert len(said) == 1 and "emulated" in said[0] and "15-23x" in said[0]


def test_a_run_record_names_its_commit_and_its_cpu(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    from smartft.provenance import PACKAGE_DIR, cpu_model, native_cpu_bf16

    out = tmp_path / "run"
    code, _, err = cli(train_args(tiny_model, glue_dir, out), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    head = subprocess.run(
        ["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert results["git_commit"] == (head or None)
    assert isinstance(results["git_dirty"], bool) or results["git_commit"] is None
    assert results["smartft_version"] and results["torch_version"] == torch.__version__
    assert results["cpu_model"] == cpu_model() and results["cpu_model"]
    assert results["cpu_native_bf16"] is native_cpu_bf16()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 needs a CUDA GPU")
def test_fp16_trains_on_a_gpu_with_its_scaler(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fp16"
    args = train_args(
        tiny_model, glue_dir, out, "--fp16", "--method", "smart", "--smart_eps", "1e-1",
        "--save_strategy", "epoch",
    )  # fmt: skip
    code, _, err = cli(args, capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["precision"] == "fp16" and "overflow_skips" in results
    assert results["train_steps"] == 12


def test_a_half_precision_checkpoint_trains_with_float32_weights(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints are often stored in float16 / bfloat16; transformers then loads them in that
    dtype, which would make the optimizer's master weights half precision."""
    from transformers import AutoModel, AutoTokenizer

    half = tmp_path / "half"
    AutoModel.from_pretrained(tiny_model, dtype=torch.float16).save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(half)
    from smartft.data.tasks import get_task
    from smartft.modeling import load_model

    model, _ = load_model(str(half), get_task("rte"))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    out = tmp_path / "run"
    assert cli(train_args(str(half), glue_dir, out), capsys)[0] == 0
    from transformers import AutoModelForSequenceClassification

    saved = AutoModelForSequenceClassification.from_pretrained(out)
    assert {p.dtype for p in saved.parameters()} == {torch.float32}
