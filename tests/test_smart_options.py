"""SMART's options for short runs: dropout in the extra passes, the teacher's horizon, start and
dropout, the relative radius; and model selection on held-out training data. Each test checks
that an option changes what it claims to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertForSequenceClassification

from smartft.errors import ConfigError
from smartft.methods import SetupInfo
from smartft.methods.r3f import R3F, R3FConfig
from smartft.methods.smart import Smart
from smartft.regularizer import SmartConfig, SmartRegularizer
from smartft.teacher import BregmanConfig, make_teacher

from .conftest import train_args
from .test_engine import cli
from .test_smart import batch, tiny_config

LABELS = torch.tensor([0, 1, 1, 0])


def dropout_model(seed: int = 0) -> BertForSequenceClassification:
    """A tiny BERT with dropout on, in training mode."""
    torch.manual_seed(seed)
    config = tiny_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
    return BertForSequenceClassification(config).train()


def r_s_at_zero(dropout: str) -> float:
    """R_s with a zero perturbation (ε = σ = 0) under a given dropout treatment."""
    model = dropout_model()
    config = SmartConfig(smart_eps=0.0, smart_noise_std=0.0, smart_dropout=dropout)
    reg = SmartRegularizer(model, config, seed=1)
    inputs = batch()
    reg.mark_clean_pass(torch.device("cpu"))
    logits = model(**inputs).logits
    value = reg.penalty(inputs, logits)
    assert value is not None
    return float(value.detach())


def test_replayed_masks_make_r_s_vanish_at_a_zero_perturbation() -> None:
    independent, replay, off = (r_s_at_zero(d) for d in ("independent", "replay", "off"))
    assert independent > 1e-7  # two dropout masks: R_s measures dropout
    assert replay == 0.0  # same masks, same input: the same function
    assert off == 0.0  # no dropout in either pass


def test_replay_leaves_the_random_stream_where_the_clean_pass_left_it() -> None:
    model = dropout_model()
    reg = SmartRegularizer(model, SmartConfig(smart_eps=1e-2, smart_dropout="replay"), seed=1)
    inputs = batch()
    reg.mark_clean_pass(torch.device("cpu"))
    logits = model(**inputs).logits
    after_clean = torch.get_rng_state()
    reg.penalty(inputs, logits)
    assert torch.equal(torch.get_rng_state(), after_clean)


def test_replay_needs_the_clean_pass_marked() -> None:
    model = dropout_model()
    reg = SmartRegularizer(model, SmartConfig(smart_dropout="replay"))
    with pytest.raises(RuntimeError, match="mark"):
        reg.penalty(batch(), model(**batch()).logits)


@pytest.mark.parametrize("dropout", ["independent", "replay", "off"])
def test_r3f_dropout_treatments(dropout: str) -> None:
    model = dropout_model()
    method = R3F({R3FConfig: R3FConfig(r3f_eps=0.0, r3f_dropout=dropout)})
    method.setup(model, SetupInfo(10, False, 0))
    inputs = {**batch(), "labels": LABELS}
    method.before_forward(model, inputs, lambda loss: None)
    logits = model(**batch()).logits
    value = float(method.loss_terms(model, inputs, logits)["loss_r3f"].detach())
    assert (value > 1e-7) if dropout == "independent" else value == 0.0


def smart(**bregman: object) -> Smart:
    return Smart(
        {SmartConfig: SmartConfig(smart_lambda=0.0), BregmanConfig: BregmanConfig(**bregman)}
    )  # type: ignore[arg-type]


def bregman_d(method: Smart, model: torch.nn.Module) -> float | None:
    inputs = {**batch(), "labels": LABELS}
    method.before_forward(model, inputs, lambda loss: None)
    logits = model(**batch()).logits
    terms = method.loss_terms(model, inputs, logits)
    return float(terms["loss_bregman"]) if "loss_bregman" in terms else None


def test_a_teacher_replaying_the_students_masks_agrees_with_an_identical_student() -> None:
    off = smart(bregman_dropout="off")
    replay = smart(bregman_dropout="replay")
    for method in (off, replay):
        method.setup(dropout_model(), SetupInfo(10, False, 0))
    assert (bregman_d(off, dropout_model()) or 0.0) > 1e-7  # eval teacher, dropout student
    assert bregman_d(replay, dropout_model()) == 0.0


def test_the_teacher_copies_the_student_until_its_start() -> None:
    model = dropout_model()
    method = smart(bregman_start=0.3)
    method.setup(model, SetupInfo(10, False, 0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    for _ in range(5):
        seen.append(bregman_d(method, model))
        loss = torch.nn.functional.cross_entropy(model(**batch()).logits, LABELS)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad()
        method.after_step(model)
    assert seen[:3] == [None, None, None] and all(v is not None for v in seen[3:])
    teacher = method.teacher
    assert teacher is not None and teacher.current_beta() == pytest.approx(0.999)


def test_at_its_start_the_teacher_is_the_student() -> None:
    model = dropout_model()
    teacher = make_teacher(model, BregmanConfig(bregman_start=0.5), total_steps=4)
    with torch.no_grad():
        for _ in range(2):
            for param in model.parameters():
                param.add_(0.1)
            teacher.update(model)
    assert teacher.active()
    for (name, a), b in zip(teacher.model.named_parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_the_horizon_sets_one_momentum_from_the_run_length() -> None:
    teacher = make_teacher(dropout_model(), BregmanConfig(bregman_horizon=0.1), total_steps=1000)
    assert teacher.beta == teacher.beta_final == pytest.approx(1 - 1 / 100)
    assert make_teacher(dropout_model(), BregmanConfig(), 1000).beta_final == 0.999


def test_the_relative_radius_follows_each_tokens_embedding_norm() -> None:
    model = dropout_model().eval()
    inputs = batch()
    config = SmartConfig(
        smart_projection="relative", smart_eps=0.1, smart_step_size=1.0, smart_noise_std=0.05
    )
    reg = SmartRegularizer(model, config, seed=1)
    deltas: list[torch.Tensor] = []
    original = reg.hook.perturbed

    def spy(delta: torch.Tensor, *args: object, **kwargs: object) -> object:
        deltas.append(delta.detach().clone())
        return original(delta, *args, **kwargs)  # type: ignore[arg-type]

    reg.hook.perturbed = spy  # type: ignore[method-assign]
    reg.penalty(inputs, model(**inputs).logits)
    final = deltas[-1]
    norms = reg.hook.token_norms(inputs["input_ids"], "inf")
    mask = inputs["attention_mask"].bool()
    ratio = final.abs().amax(-1) / norms.squeeze(-1)
    # one ascent step of 1.0 x norm, clipped to 0.1 x norm: every real token sits on its sphere
    torch.testing.assert_close(ratio[mask], torch.full_like(ratio[mask], 0.1))
    assert len(set(norms.squeeze(-1)[mask].tolist())) > 1  # a different radius per token


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"smart_dropout": "replay", "smart_fraction": 0.5}, "needs smart_fraction=1"),
        ({"smart_projection": "relative", "smart_norm_scope": "example"}, "smart_norm_scope"),
        ({"bregman_dropout": "replay", "bregman_fraction": 0.5}, "needs bregman_fraction=1"),
        ({"bregman_horizon": 2.0}, "bregman_horizon"),
    ],
)
def test_contradictory_options_are_refused(options: dict[str, object], message: str) -> None:
    from smartft.config import resolve

    with pytest.raises(ConfigError, match=message):
        resolve({"method": "smart", **options})


def test_holdout_selection_evaluates_on_training_data_never_dev(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smartft.config import resolve
    from smartft.data.sources import load_train_data

    common = {"task_name": "rte", "data_dir": str(glue_dir)}
    full = load_train_data(resolve(common).train)
    held = load_train_data(resolve({**common, "holdout_fraction": 0.25}).train)
    assert held.eval is not None and full.eval is not None
    assert len(held.eval) == 12 and len(held.train) == 36  # of 48 training pairs
    assert set(held.eval.texts).isdisjoint(held.train.texts)
    assert set(held.eval.texts) | set(held.train.texts) == set(full.train.texts)
    assert set(held.eval.texts).isdisjoint(full.eval.texts)  # dev is not touched
    out = tmp_path / "select"
    code, _, err = cli(train_args(tiny_model, glue_dir, out, "--holdout_fraction", "0.25"), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_split"] == "holdout" and results["eval_examples"] == 12
    assert results["train_examples"] == 36


def test_score_dev_at_end_reads_dev_once_with_the_checkpoint_the_holdout_chose(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "select"
    extra = ("--holdout_fraction", "0.25", "--score_dev_at_end")
    code, _, err = cli(train_args(tiny_model, glue_dir, out, *extra), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_split"] == "holdout" and results["checkpoint_chosen_on"] in (
        "holdout",
        "end",
    )
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(e.get("eval_examples", 12) == 12 for e in evals if e["event"] == "eval")
    # dev's one score is the saved (chosen) model's score on dev
    scored = cli(
        [
            "eval",
            "--model_name_or_path",
            str(out),
            "--task_name",
            "rte",
            "--data_dir",
            str(glue_dir),
            "--max_seq_length",
            "32",
        ],
        capsys,
    )
    assert scored[0] == 0, scored[2]
    assert json.loads(scored[1])["accuracy"] == pytest.approx(results["dev_accuracy"])
    code, _, err = cli(
        train_args(tiny_model, glue_dir, tmp_path / "x", "--score_dev_at_end"), capsys
    )
    assert code == 2 and "--score_dev_at_end needs --holdout_fraction" in err
