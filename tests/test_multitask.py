"""Multi-task learning (one encoder, a head per task), its sampling schemes, exact resume, the
saved folder, fine-tuning from it, task definitions, and knowledge distillation."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from smartft.data.dataset import BatchSampler
from smartft.losses import distillation_loss
from smartft.methods import METHODS
from smartft.multitask import TaskSampler

from .conftest import command, train_args
from .test_engine import cli, events
from .test_reliability import run_train, same_run

TASKS = "rte,stsb"


def sampler(scheme: str, sizes: tuple[int, ...], **extra: float) -> TaskSampler:
    samplers = [BatchSampler([5] * (4 * n), 4, shuffle=True, seed=t) for t, n in enumerate(sizes)]
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + 4 * n)
    return TaskSampler(samplers, offsets, scheme, seed=1, **extra)  # type: ignore[arg-type]


def tasks_of(batches: list[list[int]], sizes: tuple[int, ...]) -> list[int]:
    edges = [4 * sum(sizes[: t + 1]) for t in range(len(sizes))]
    return [next(t for t, edge in enumerate(edges) if batch[0] < edge) for batch in batches]


def test_proportional_sampling_takes_every_batch_of_every_task_once_per_epoch() -> None:
    sizes = (10, 30, 60)
    chosen = sampler("proportional", sizes)
    for epoch in range(3):
        chosen.set_epoch(epoch)
        batches = chosen.batches()
        assert Counter(tasks_of(batches, sizes)) == {0: 10, 1: 30, 2: 60}
        assert sorted(i for b in batches for i in b) == list(range(4 * sum(sizes)))
        assert all(len(set(tasks_of([b], sizes))) == 1 for b in batches)  # one task per batch
    chosen.set_epoch(0)
    first = chosen.batches()
    chosen.set_epoch(1)
    assert chosen.batches() != first  # a new order every epoch, the same for a given epoch
    chosen.set_epoch(0)
    assert chosen.batches() == first


def test_ratio_sampling_caps_the_auxiliary_tasks() -> None:
    chosen = sampler("ratio", (10, 30, 4), ratio=0.5)
    assert chosen.counts() == [10, 5, 4] and len(chosen) == 19
    assert Counter(tasks_of(chosen.batches(), (10, 30, 4))) == {0: 10, 1: 5, 2: 4}


def test_temperature_sampling_draws_tasks_in_proportion_to_size_to_the_one_over_t() -> None:
    sizes = (10, 90)
    chosen = sampler("temperature", sizes, temperature=2.0)
    drawn: Counter[int] = Counter()
    for epoch in range(40):
        chosen.set_epoch(epoch)
        drawn.update(tasks_of(chosen.batches(), sizes))
    share = drawn[0] / sum(drawn.values())
    expected = math.sqrt(10) / (math.sqrt(10) + math.sqrt(90))  # 0.25, against 0.1 proportional
    assert abs(share - expected) < 0.03


def test_a_resumed_sampler_continues_where_it_stopped() -> None:
    chosen = sampler("temperature", (3, 5), temperature=1.5)
    chosen.set_epoch(2)
    whole = list(chosen)
    chosen.set_epoch(2)
    chosen.skip = 3
    assert list(chosen) == whole[3:]


def mt_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    args = train_args(model, data, out, *extra)
    return [*args[: args.index("--task_name") + 1], TASKS, *args[args.index("--task_name") + 2 :]]


def test_multi_task_training_saves_an_encoder_and_heads_and_fine_tunes_from_them(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModel

    out = tmp_path / "mt"
    code, _, err = cli(mt_args(tiny_model, glue_dir, out, "--method", "smart"), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["tasks"] == ["rte", "stsb"]
    assert {"eval_mean", "eval_rte_accuracy", "eval_stsb_pearson"} <= set(results)
    expected = (results["eval_rte_accuracy"] + results["eval_stsb_pearson"]) / 2
    assert results["eval_mean"] == pytest.approx(expected)
    evals = [e for e in events(out) if e["event"] == "eval"]
    assert evals and all("eval_rte_accuracy" in e and "eval_stsb_spearman" in e for e in evals)
    assert type(AutoModel.from_pretrained(out)).__name__ == "BertModel"
    head = out / "heads" / "stsb" / "head.safetensors"
    assert head.is_file() and (out / "heads" / "rte" / "config.json").is_file()
    # the STS-B head is taken over, unless a fresh one is asked for
    from safetensors.torch import load_file

    saved = load_file(str(head))["classifier.weight"]
    for fresh, same in ((False, True), (True, False)):
        ft = tmp_path / f"ft-{fresh}"
        extra = ["--num_train_epochs", "1", "--learning_rate", "1e-9", "--fresh_head", str(fresh)]
        args = train_args(str(out), glue_dir, ft, *extra)
        args[args.index("rte")] = "stsb"
        assert cli(args, capsys)[0] == 0
        weight = load_file(str(ft / "model.safetensors"))["classifier.weight"]
        assert torch.allclose(weight, saved, atol=1e-6) is same


def test_eval_and_predict_on_a_multi_task_run_use_the_named_tasks_stored_head(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mt"
    code, _, err = cli(mt_args(tiny_model, glue_dir, out, "--num_train_epochs", "1"), capsys)
    assert code == 0, err
    trained = json.loads((out / "all_results.json").read_text())
    for task, metric in (("rte", "accuracy"), ("stsb", "pearson")):
        scores = set()
        for _ in range(2):  # a random head would score differently on each call
            args = command(
                "eval",
                model_name_or_path=out,
                task_name=task,
                data_dir=glue_dir,
                max_seq_length=32,
            )
            code, stdout, err = cli(args, capsys)
            assert code == 0, err
            scores.add(json.loads(stdout)[metric])
        assert len(scores) == 1
        assert scores.pop() == pytest.approx(trained[f"eval_{task}_{metric}"], abs=1e-6)
    predict = command(
        "predict",
        model_name_or_path=out,
        task_name="stsb",
        data_dir=glue_dir,
        output_dir=tmp_path / "sub",
        max_seq_length=32,
    )
    code, _, err = cli(predict, capsys)
    assert code == 0, err
    assert (tmp_path / "sub" / "STS-B.tsv").read_text().startswith("index\tprediction")
    args = command("eval", model_name_or_path=out, task_name="mrpc", data_dir=glue_dir)
    code, _, err = cli(args, capsys)
    assert code == 2 and "heads for rte, stsb only; it has no head for task mrpc" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"plain", "smart"}))
def test_every_method_works_in_the_multi_task_stage(
    method: str, tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"freelb": ["--freelb_start_step", "1"], "lnsr": ["--lnsr_layer", "1"]}
    args = mt_args(
        tiny_model, glue_dir, tmp_path / method, "--method", method, *extra.get(method, [])
    )
    code, _, err = cli([*args, "--num_train_epochs", "1", "--save_model", "false"], capsys)
    assert code == 0, err


@pytest.mark.parametrize(
    "save", [["steps", "--save_steps", "5"], ["epoch"]], ids=["steps", "epoch"]
)
def test_a_multi_task_run_resumes_exactly(
    save: list[str], tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    common = [
        "--method", "smart", "--smart_eps", "1e-2", "--task_sampling", "temperature",
        "--logging_steps", "1", "--save_strategy", *save,
    ]  # fmt: skip
    reference = tmp_path / "reference"
    assert run_train(mt_args(tiny_model, glue_dir, reference, *common)).returncode == 0
    killed = tmp_path / "killed"
    args = mt_args(tiny_model, glue_dir, killed, *common)
    assert run_train(args, kill_at="update:8").returncode == -9
    resumed = run_train([*args, "--resume_from_checkpoint", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    same_run(reference, killed)


def test_distillation_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert float(distillation_loss(logits, torch.softmax(logits / 2, -1), 2.0)) < 1e-6
    teacher = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    student = torch.log_softmax(logits, -1)
    expected = (teacher * (teacher.log() - student)).sum(-1).mean()
    assert float(distillation_loss(logits, teacher, 1.0)) == pytest.approx(float(expected))
    scores = torch.tensor([[1.0], [3.0]])
    assert float(distillation_loss(scores, torch.tensor([2.0, 2.0]), 5.0)) == pytest.approx(1.0)


def test_a_teacher_equal_to_the_students_start_gives_a_soft_loss_near_zero(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The teacher is the student's own starting point (same checkpoint, same seed, so the same
    new head): its targets are the student's own predictions, and with α = 1 the first update's
    task loss is the KL between the two, which only dropout keeps from being 0."""
    teacher = tmp_path / "teacher"
    args = train_args(tiny_model, glue_dir, teacher, "--learning_rate", "1e-12", "--max_steps", "1")
    assert cli(args, capsys)[0] == 0
    student = tmp_path / "student"
    common = ["--teachers", str(teacher), "--kd_alpha", "1", "--logging_steps", "1"]
    assert cli(train_args(tiny_model, glue_dir, student, *common), capsys)[0] == 0
    first = next(e for e in events(student) if e["event"] == "train")
    hard = next(e for e in events(teacher) if e["event"] == "train")
    assert float(first["task_loss"]) < 0.05 < float(hard["task_loss"])  # ≈ 0 against ln 2
    assert (student / "distill" / "rte.safetensors").is_file()


@pytest.mark.parametrize("problem", ["twice", "missing", "unknown_field", "bad_type", "teacher"])
def test_bad_multi_task_input_is_one_clear_error(
    problem: str,
    tiny_model: str,
    glue_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = mt_args(tiny_model, glue_dir, out)
    expected = {
        "twice": "names rte more than once",
        "missing": "file not found",
        "unknown_field": "unknown field(s) n_classes",
        "bad_type": "task_type 'Ranking' is not supported",
        "teacher": "--teachers",
    }[problem]
    if problem == "twice":
        args[args.index(TASKS)] = "rte,stsb,rte"
    elif problem == "missing":
        args[args.index(TASKS)] = "rte,mrpc"
    elif problem in ("unknown_field", "bad_type"):
        definition = tmp_path / "tasks.yaml"
        field = "n_classes: 2" if problem == "unknown_field" else "n_class: 2"
        kind = "Ranking" if problem == "bad_type" else "Classification"
        definition.write_text(
            f"mine:\n  task_type: {kind}\n  {field}\n  data: {{train: t.jsonl}}\n"
            "  text_columns: [text]\n"
        )
        args[args.index(TASKS)] = "rte,mine"
        args += ["--task_def", str(definition)]
    else:
        teacher = tmp_path / "stsb-model"
        sts = train_args(tiny_model, glue_dir, teacher, "--max_steps", "1")
        sts[sts.index("rte")] = "stsb"
        assert cli(sts, capsys)[0] == 0
        args = train_args(tiny_model, glue_dir, out, "--teachers", str(teacher))
    code, _, err = cli(args, capsys)
    assert code == 2, err
    assert expected in err and "Traceback" not in err
    assert not out.exists()


def test_a_task_definition_joins_a_registered_task(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"text": "good fun film ." if i % 2 else "bad boring book .", "label": i % 2}
        for i in range(24)
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:8]) + "\n")
    (tmp_path / "tasks.yaml").write_text(
        "sentiment:\n  task_type: Classification\n  n_class: 2\n  metric_meta: [ACC, F1]\n"
        "  loss: CeCriterion\n  dropout_p: 0.05\n  data: {train: train.jsonl, dev: dev.jsonl}\n"
        "  text_columns: [text]\n"
    )
    args = mt_args(
        tiny_model, glue_dir, tmp_path / "run", "--task_def", str(tmp_path / "tasks.yaml")
    )
    args[args.index(TASKS)] = "rte,sentiment"
    code, _, err = cli([*args, "--num_train_epochs", "1"], capsys)
    assert code == 0, err
    results = json.loads((tmp_path / "run" / "all_results.json").read_text())
    assert {"eval_sentiment_accuracy", "eval_sentiment_f1"} <= set(results)


def test_a_checkpoint_with_another_tasks_head_needs_fresh_head_and_gets_a_new_one(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file

    rte = tmp_path / "rte"  # a 2-label sentence model, as an MNLI checkpoint would be 3
    assert cli(train_args(tiny_model, glue_dir, rte, "--num_train_epochs", "1"), capsys)[0] == 0
    saved = load_file(str(rte / "model.safetensors"))["classifier.weight"]

    def stsb(out: Path, *extra: str) -> list[str]:
        args = train_args(str(rte), glue_dir, out, "--num_train_epochs", "1", *extra)
        args[args.index("rte")] = "stsb"
        return args

    code, _, err = cli(stsb(tmp_path / "refused"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has a 2-output sentence-classification head" in err
    assert "needs a 1-output regression head: pass --fresh_head" in err
    assert not (tmp_path / "refused").exists()
    code, _, err = cli(stsb(tmp_path / "fresh", "--fresh_head"), capsys)
    assert code == 0, err
    assert "2-output sentence-classification head is replaced by a new 1-output regression" in err
    # a head that fits is kept, or drawn anew with --fresh_head
    for fresh, same in ((False, True), (True, False)):
        out_dir = tmp_path / f"rte-again-{fresh}"
        extra = ["--num_train_epochs", "1", "--learning_rate", "1e-9", "--fresh_head", str(fresh)]
        assert cli(train_args(str(rte), glue_dir, out_dir, *extra), capsys)[0] == 0
        weight = load_file(str(out_dir / "model.safetensors"))["classifier.weight"]
        assert torch.allclose(weight, saved, atol=1e-6) is same
