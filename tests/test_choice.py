"""Multiple choice: the reader's strictness (answer counts, labels), k inputs per question in
the batch and k scores per question out, SMART's divergence over the answers, and the
`cosmosqa` task end to end (train with every perturbing method, eval, predict, resume)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from smartft.data.dataset import Collator, load_examples, tokenize
from smartft.data.sources import custom_task
from smartft.data.tasks import get_task
from smartft.errors import ConfigError, DataError

from .conftest import SMART_FLAGS, WORDS, every_method, sentence, write_rte
from .test_engine import cli

COSMOS = get_task("cosmosqa")
HEADER = ["id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label"]


def write_cosmos(folder: Path, n_train: int = 24, n_dev: int = 12, seed: int = 0) -> Path:
    """Cosmos QA's layout (quoted CSV, CRLF): the right answer repeats a word of the question,
    so a model can learn it. Each context is shared by two questions."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.csv", n_train), ("valid.csv", n_dev)):
        with (folder / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            context = ""
            for i in range(n):
                if i % 2 == 0:
                    context = f'{sentence(rng)} "quoted" , {sentence(rng)}'
                key = rng.choice(WORDS)
                label = rng.randrange(4)
                answers = [sentence(rng, 3) for _ in range(4)]
                answers[label] = f"{key} {key} ."
                writer.writerow([f"q{i}", context, f"why {key} ?", *answers, label])
    return folder.parent


def mc_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model_name_or_path",
        model,
        "--task_name",
        "cosmosqa",
        "--data_dir",
        str(data),
        "--output_dir",
        str(out),
        "--max_seq_length",
        "48",
        "--per_device_train_batch_size",
        "4",
        "--num_train_epochs",
        "2",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "2",
        "--seed",
        "1",
        *extra,
    ]


# ----------------------------------------------------------------------------- reading


def test_cosmos_layout_reads_k_answers_labels_and_contexts(tmp_path: Path) -> None:
    data = write_cosmos(tmp_path / "mc" / "CosmosQA")
    examples = load_examples(COSMOS, "train", data)
    assert len(examples) == 24 and examples.shape == "choice"
    assert all(len(t) == 6 for t in examples.texts)  # context, question, 4 answers
    assert examples.labels is not None and set(examples.labels) <= {0.0, 1.0, 2.0, 3.0}
    assert examples.ids[:2] == ["q0", "q1"] and '"quoted"' in examples.texts[0][0]
    assert examples.groups is not None and examples.groups[0] == examples.groups[1]


def test_the_shared_cosmos_valid_file_reads_whole() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mc"
    if not (shared / "CosmosQA" / "valid.csv").is_file():
        pytest.skip("the shared Cosmos QA file is not on this machine")
    examples = load_examples(COSMOS, "validation", shared)
    assert len(examples) == 2985 and examples.labels is not None
    assert [examples.labels.count(float(k)) for k in range(4)] == [744, 729, 761, 751]


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["q1", "c", "q", "a", "b", "c", "", "1"], "has 3 answers but the task has 4"),
        (["q1", "c", "q", "a", "b", "c", "d", "4"], "label '4' is not an answer index in 0..3"),
        (["q1", "c", "q", "a", "b", "c", "d", "x"], "label 'x' is not an answer index in 0..3"),
        (["q1", "c", "q", "a", "", "c", "d", "1"], "answer 1 is empty"),
    ],
)
def test_reader_refuses_a_bad_row_in_one_line_naming_it(
    tmp_path: Path, row: list[str], message: str
) -> None:
    folder = tmp_path / "CosmosQA"
    folder.mkdir()
    good = ["q0", "c", "q", "a", "b", "c", "d", "0"]
    write_rows(folder / "train.csv", [HEADER, good, row])
    with pytest.raises(DataError) as err:
        load_examples(COSMOS, "train", tmp_path)
    text = str(err.value)
    assert message in text.splitlines()[0] and "line 3" in text.splitlines()[0]


def test_own_files_infer_k_from_jsonl_lists_and_refuse_another_count(tmp_path: Path) -> None:
    from smartft.config import TrainConfig

    lines = [
        {"id": "a", "context": "c", "question": "q", "answers": ["x", "y", "z"], "label": 2},
        {"id": "b", "context": "c", "question": "q", "answers": ["x", "y", "z"], "label": 0},
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    cfg = TrainConfig(train_file=str(train), problem_type="multiple_choice")
    spec = custom_task(cfg)
    examples = load_examples(spec, "train", None)
    assert len(examples.texts[0]) == 5 and examples.labels == [2.0, 0.0]
    lines[1]["answers"] = ["x", "y"]
    train.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: has 2 answers but the task has 3"):
        load_examples(spec, "train", None)


# ----------------------------------------------------------------------------- the model's view


def test_batch_holds_k_rows_per_question_and_the_model_gives_k_scores(
    tiny_model: str, tmp_path: Path
) -> None:
    from smartft.modeling import load_model, task_view

    data = write_cosmos(tmp_path / "mc" / "CosmosQA")
    examples = load_examples(COSMOS, "validation", data)
    model, tokenizer = load_model(tiny_model, COSMOS)
    task_view(model, COSMOS)
    features = tokenize(examples, tokenizer, 48, False)
    batch = Collator(tokenizer.pad_token_id, False)([features[i] for i in range(3)])
    assert batch["input_ids"].shape[0] == 12 and batch["labels"].shape == (3,)
    second = tokenizer.decode(batch["input_ids"][5])  # question 1, answer 1
    assert examples.texts[1][3].split()[0] in second and "?" in second  # "why" is unknown
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert logits.shape == (3, 4)
    assert model.config.smartft_shape == "choice" and model.config.num_choices == 4


def smart_terms(
    model_dir: str, batch: dict[str, torch.Tensor], shift: torch.Tensor
) -> dict[str, float]:
    """SMART's terms on a batch when each input row's score is moved by `shift` (one per row)."""
    from smartft.methods import SetupInfo, get_method
    from smartft.modeling import load_model, task_view
    from smartft.regularizer import SmartConfig

    torch.manual_seed(0)
    model, _ = load_model(model_dir, COSMOS)
    model.train()
    model.classifier.register_forward_hook(lambda m, a, out: out + shift[:, None])
    task_view(model, COSMOS)
    method = get_method("smart")({SmartConfig: SmartConfig(smart_eps=1e-2, smart_step_size=1e-2)})
    method.setup(model, SetupInfo(total_steps=10, regression=False, seed=0))
    torch.manual_seed(1)
    method.before_forward(model, batch, lambda loss: None)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert logits.shape == (4, 4)
    return {k: float(v.detach()) for k, v in method.loss_terms(model, batch, logits).items()}


def test_smart_divergence_is_over_the_answers_of_each_question(
    tiny_model: str, tmp_path: Path
) -> None:
    """R_s and the Bregman term compare distributions over each question's answers: moving
    all of a question's scores together changes nothing, moving one answer's does."""
    data = write_cosmos(tmp_path / "mc" / "CosmosQA")
    examples = load_examples(COSMOS, "validation", data)
    from smartft.modeling import load_model

    _, tokenizer = load_model(tiny_model, COSMOS)
    features = tokenize(examples, tokenizer, 48, False)
    batch = Collator(tokenizer.pad_token_id, False)([features[i] for i in range(4)])
    reference = smart_terms(tiny_model, batch, torch.zeros(16))
    assert set(reference) == {"loss_smart", "loss_bregman"} and min(reference.values()) > 0
    per_question = torch.tensor([5.0, -3.0, 7.0, 1.0]).repeat_interleave(4)
    assert smart_terms(tiny_model, batch, per_question) == pytest.approx(reference, rel=1e-4)
    per_answer = torch.tensor([5.0, -3.0, 7.0, 1.0]).repeat(4)
    assert smart_terms(tiny_model, batch, per_answer) != pytest.approx(reference, rel=1e-4)


# ----------------------------------------------------------------------------- end to end


@every_method()
def test_cosmosqa_trains_with_every_kind_of_method(
    flags: list[str], tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_cosmos(tmp_path / "mc" / "CosmosQA")
    out = tmp_path / "run"
    code, _, err = cli(mc_args(tiny_model, data, out, *flags), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= results["eval_accuracy"] <= 1.0


def test_cosmosqa_learns_and_eval_predict_use_the_saved_scorer(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_cosmos(tmp_path / "mc" / "CosmosQA", n_train=64, n_dev=24)
    out = tmp_path / "run"
    args = mc_args(tiny_model, data, out, "--num_train_epochs", "6", "--learning_rate", "3e-3")
    code, _, err = cli(args, capsys)
    assert code == 0, err
    trained = json.loads((out / "all_results.json").read_text())["eval_accuracy"]
    assert trained > 0.5  # chance is 0.25
    code, text, err = cli(
        ["eval", "--model_name_or_path", str(out), "--task_name", "cosmosqa", "--data_dir",
         str(data)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(text)["accuracy"] == pytest.approx(trained)
    code, _, err = cli(
        ["predict", "--model_name_or_path", str(out), "--task_name", "cosmosqa", "--data_dir",
         str(data), "--split", "validation", "--output_dir", str(tmp_path / "pred")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    lines = (tmp_path / "pred" / "cosmosqa-validation.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction\tanswer" and len(lines) == 25
    index, number, answer = lines[1].split("\t")
    row = load_examples(COSMOS, "validation", data)
    assert index == "q0" and answer == row.texts[0][2 + int(number)]


def test_fast_mode_distillation_and_multi_task_are_refused_clearly(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_cosmos(tmp_path / "mc" / "CosmosQA")
    fast = [*SMART_FLAGS, "--smart_fraction", "0.5"]
    code, _, err = cli(mc_args(tiny_model, data, tmp_path / "a", *fast), capsys)
    assert code != 0 and "a multiple-choice task regularizes every output" in err
    teachers = ["--teachers", str(tmp_path / "teacher")]
    code, _, err = cli(mc_args(tiny_model, data, tmp_path / "b", *teachers), capsys)
    assert code != 0 and "works on sentence tasks only, not a multiple-choice task" in err
    write_rte(data / "RTE")
    args = mc_args(tiny_model, data, tmp_path / "c")
    args[args.index("cosmosqa")] = "rte,cosmosqa"
    code, _, err = cli(args, capsys)
    assert code != 0 and "train the multiple-choice task cosmosqa on its own" in err
    with pytest.raises(ConfigError, match="names the context and the question columns"):
        from smartft.config import TrainConfig
        from smartft.data.sources import resolve_task

        resolve_task(TrainConfig(train_file="x.csv", problem_type="multiple_choice",
                                 text_columns="context"))  # fmt: skip


def test_task_def_learns_multiple_choice_in_mt_dnn_names(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_cosmos(tmp_path / "mc" / "CosmosQA") / "CosmosQA"
    definition = tmp_path / "tasks.yaml"
    definition.write_text(
        "my_mc:\n  task_type: MultipleChoice\n  metric_meta: [ACC]\n"
        f"  data: {{train: {data}/train.csv, dev: {data}/valid.csv}}\n"
        "  text_columns: [context, question]\n  label_column: label\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    args = mc_args(tiny_model, tmp_path, out, "--task_def", str(definition))
    args[args.index("cosmosqa")] = "my_mc"
    code, _, err = cli(args, capsys)
    assert code == 0, err
    assert "eval_accuracy" in json.loads((out / "all_results.json").read_text())
    definition.write_text(definition.read_text().replace("[context, question]", "[context]"))
    code, _, err = cli([*args, "--overwrite_output_dir"], capsys)
    assert code != 0 and "text_columns must name the context and question columns" in err
