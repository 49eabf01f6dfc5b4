"""Extractive QA: the SQuAD reader's checks, windows over long contexts (an answer across a
window boundary, a context shorter than one window, whitespace and Unicode offsets), the best
legal span, the official metrics by hand, and the `squad` task end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from smartft.data.dataset import load_examples, tokenize
from smartft.data.readers import read_squad
from smartft.data.tasks import get_task
from smartft.errors import DataError
from smartft.span import (
    SpanLayout,
    answer_tokens,
    best_span,
    normalize_answer,
    squad_metrics,
    token_f1,
)

from .conftest import WORDS, every_method
from .test_engine import cli

SQUAD = get_task("squad")


def squad_file(path: Path, paragraphs: list[tuple[str, list[tuple[str, str, str]]]]) -> Path:
    """A SQuAD v1.1 file: one article per paragraph of (context, [(id, question, answer)])."""
    data = []
    for number, (context, questions) in enumerate(paragraphs):
        qas = [
            {
                "id": ident,
                "question": question,
                "answers": [{"text": answer, "answer_start": context.index(answer)}],
            }
            for ident, question, answer in questions
        ]
        data.append(
            {"title": f"article{number // 2}", "paragraphs": [{"context": context, "qas": qas}]}
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data, "version": "1.1"}), encoding="utf-8")
    return path


def write_squad(folder: Path, n_train: int = 24, n_dev: int = 12, seed: int = 0) -> Path:
    """SQuAD's layout with contexts of 20-40 words (several windows at 40 tokens): the answer is
    the two words after "red", which the question names."""
    rng = random.Random(seed)
    plain = [w for w in WORDS if w != "red"]
    for name, n in (("train-v1.1.json", n_train), ("dev-v1.1.json", n_dev)):
        paragraphs = []
        for i in range(n):
            words = [rng.choice(plain) for _ in range(rng.randint(20, 40))]
            at = rng.randrange(len(words) - 2)
            answer = f"{words[at + 1]} {words[at + 2]}"
            words[at] = "red"
            context = " ".join(words) + " ."
            paragraphs.append((context, [(f"{name[:3]}{i}", "what is red ?", f"red {answer}")]))
        squad_file(folder / name, paragraphs)
    return folder.parent


def qa_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model_name_or_path", model, "--task_name", "squad", "--data_dir", str(data),
        "--output_dir", str(out), "--max_seq_length", "40", "--doc_stride", "12",
        "--per_device_train_batch_size", "4", "--num_train_epochs", "2", "--learning_rate",
        "1e-3", "--logging_steps", "2", "--seed", "1", *extra,
    ]  # fmt: skip


# ----------------------------------------------------------------------------- reading


def test_the_shared_squad_dev_file_reads_whole() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "qa"
    if not (shared / "SQuAD" / "dev-v1.1.json").is_file():
        pytest.skip("the shared SQuAD file is not on this machine")
    examples = load_examples(SQUAD, "validation", shared)
    assert len(examples) == 10570 and examples.answers is not None
    assert sum(map(len, examples.answers)) == 34726
    assert examples.groups is not None and len(set(examples.groups)) == 48


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"text": "dog", "answer_start": 0}, "answer 'dog' is not at character 0"),
        ({"text": "dog"}, "an answer needs text and answer_start"),
    ],
)
def test_reader_refuses_an_answer_that_is_not_where_it_says(
    tmp_path: Path, answer: dict[str, object], message: str
) -> None:
    context = "the big dog runs ."
    qa = {"id": "x1", "question": "who ?", "answers": [answer]}
    path = tmp_path / "SQuAD" / "train-v1.1.json"
    path.parent.mkdir()
    document = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_examples(SQUAD, "train", tmp_path)
    first = str(err.value).splitlines()[0]
    assert message in first and "question 1" in first and "'x1'" in first


def test_reader_refuses_a_file_that_is_not_squad(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"context": "x"}]), encoding="utf-8")
    with pytest.raises(DataError, match="not a SQuAD file"):
        read_squad(path)


# ----------------------------------------------------------------------------- windows


def test_answer_tokens_by_hand() -> None:
    spans = [None, None, (0, 3), (4, 7), (8, 11), None]
    assert answer_tokens(spans, 4, 11) == (3, 4)
    assert answer_tokens(spans, 5, 6) == (3, 3)  # inside one token
    assert answer_tokens([None, (4, 7), (8, 11)], 0, 7) == (0, 0)  # starts before the window
    assert answer_tokens([None, (0, 3), (4, 7)], 4, 11) == (0, 0)  # ends after it


def test_an_answer_across_a_window_boundary_is_labelled_only_where_whole(
    tiny_model: str, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    words = [WORDS[i % 20] for i in range(40)]
    context = " ".join(words)
    answer = " ".join(words[17:21])  # window 1 holds words 0-18, window 2 words 11-29
    path = squad_file(
        tmp_path / "SQuAD" / "train-v1.1.json", [(context, [("a", "what ?", answer)])]
    )
    examples = load_examples(SQUAD, "train", path.parent.parent)
    features = tokenize(examples, tokenizer, 24, False, doc_stride=8)
    layout = features.layout
    assert isinstance(layout, SpanLayout) and features.labels is not None
    assert len(layout.example_of) >= 3  # 40 words in windows of about 19 context tokens
    whole = partial = 0
    for labels, offsets in zip(features.labels, layout.offsets, strict=True):
        inside = [span for span in offsets if span is not None]
        covers = inside[0][0] <= context.index(answer) and inside[-1][1] >= context.index(
            answer
        ) + len(answer)
        if labels == [0, 0]:
            touches = any(a < context.index(answer) + len(answer) and b > context.index(answer)
                          for a, b in inside)  # fmt: skip
            partial += touches
            assert not covers
        else:
            whole += 1
            first, last = offsets[labels[0]], offsets[labels[1]]
            assert first is not None and last is not None
            assert context[first[0] : last[1]] == answer
    assert whole >= 1 and partial >= 1  # the boundary case happened


def test_a_short_context_is_one_window(tiny_model: str, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    path = squad_file(
        tmp_path / "SQuAD" / "train-v1.1.json", [("the dog runs .", [("a", "who ?", "dog")])]
    )
    features = tokenize(load_examples(SQUAD, "train", path.parent.parent), tokenizer, 40, False)
    assert isinstance(features.layout, SpanLayout) and features.layout.example_of == [0]
    assert features.labels is not None and features.labels[0] != [0, 0]


def test_offsets_survive_whitespace_and_unicode(tiny_model: str, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    context = "  Zürich\tand   the café —  naïve dog ."
    path = squad_file(
        tmp_path / "SQuAD" / "train-v1.1.json", [(context, [("u", "what ?", "café")])]
    )
    examples = load_examples(SQUAD, "train", path.parent.parent)
    features = tokenize(examples, tokenizer, 40, False)
    layout = features.layout
    assert isinstance(layout, SpanLayout) and features.labels is not None
    start, end = features.labels[0]
    first, last = layout.offsets[0][start], layout.offsets[0][end]
    assert first is not None and last is not None and context[first[0] : last[1]] == "café"
    scores = np.full((1, 2, len(layout.offsets[0])), -5.0)
    scores[0, 0, start], scores[0, 1, end] = 5.0, 5.0
    assert layout.predictions(scores) == {"u": "café"}


def test_best_span_is_legal_and_the_best_window_wins() -> None:
    offsets = [None, None, (0, 3), (4, 7), (8, 11), (12, 15)]
    starts = np.array([9.0, 0, 1, 0, 3, 0])  # the best start is outside the context
    ends = np.array([9.0, 0, 0, 2, 0, 1])  # the best end comes before the best start
    assert best_span(starts, ends, offsets, 30) == (4.0, (8, 15))  # start 4, end 5: 3 + 1
    assert best_span(starts, ends, offsets, 1) == (3.0, (8, 11))  # one token: 3 + 0 at token 4
    layout = SpanLayout([0, 0], [offsets, offsets], ["abc def ghi jkl"], None, ["q"], 30)
    better = np.stack([np.stack([starts, ends]), np.stack([starts, ends + 5])])
    assert layout.predictions(better) == {"q": "ghi jkl"}


# ----------------------------------------------------------------------------- metrics


def test_metrics_by_hand() -> None:
    assert normalize_answer("The  Cat's, hat!") == "cats hat"
    assert normalize_answer("an Apple a day") == "apple day"
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P 1, R 2/3
    assert token_f1("", "cat") == 0.0
    answers = {"1": ["Denver Broncos", "The Denver Broncos"], "2": ["1998", "in 1998"]}
    got = squad_metrics({"1": "denver broncos.", "2": "it was 1998"}, answers)
    # 1: exact after normalising; 2: F1 0.5 against "1998" (P 1/3, R 1), better than the 0.4
    # against "in 1998" (P 1/3, R 1/2): the best reference counts
    assert got["exact_match"] == pytest.approx(0.5)
    assert got["f1"] == pytest.approx((1.0 + 0.5) / 2)
    assert squad_metrics({}, {"1": ["x"]}) == {"f1": 0.0, "exact_match": 0.0}


# ----------------------------------------------------------------------------- end to end


@every_method()
def test_squad_trains_with_every_kind_of_method(
    flags: list[str], tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_squad(tmp_path / "qa" / "SQuAD")
    out = tmp_path / "run"
    code, _, err = cli(qa_args(tiny_model, data, out, *flags), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= results["eval_exact_match"] <= results["eval_f1"] <= 1.0


def test_squad_learns_and_eval_predict_agree(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_squad(tmp_path / "qa" / "SQuAD", n_train=64, n_dev=16)
    out = tmp_path / "run"
    args = qa_args(tiny_model, data, out, "--num_train_epochs", "8", "--learning_rate", "3e-3")
    code, _, err = cli(args, capsys)
    assert code == 0, err
    trained = json.loads((out / "all_results.json").read_text())
    assert trained["eval_f1"] > 0.3  # the answer follows "red"
    code, text, err = cli(
        ["eval", "--model_name_or_path", str(out), "--task_name", "squad", "--data_dir",
         str(data)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(text)["f1"] == pytest.approx(trained["eval_f1"])
    code, _, err = cli(
        ["predict", "--model_name_or_path", str(out), "--task_name", "squad", "--data_dir",
         str(data), "--split", "validation", "--doc_stride", "12", "--output_dir",
         str(tmp_path / "pred")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    predicted = json.loads((tmp_path / "pred" / "squad-validation.json").read_text())
    examples = load_examples(SQUAD, "validation", data)
    assert list(predicted) == examples.ids
    assert examples.answers is not None
    truths = {i: [t for t, _ in a] for i, a in zip(examples.ids, examples.answers, strict=True)}
    assert squad_metrics(predicted, truths)["f1"] == pytest.approx(trained["eval_f1"])


def test_a_sentence_model_cannot_answer_squad(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .conftest import train_args, write_rte

    glue = tmp_path / "glue"
    write_rte(glue / "RTE")
    out = tmp_path / "rte"
    assert cli(train_args(tiny_model, glue, out, "--num_train_epochs", "1"), capsys)[0] == 0
    data = write_squad(tmp_path / "qa" / "SQuAD")
    code, _, err = cli(
        ["eval", "--model_name_or_path", str(out), "--task_name", "squad", "--data_dir",
         str(data)],
        capsys,
    )  # fmt: skip
    assert code != 0 and "sentence-classification head, but task squad needs" in err


def test_the_split_script_keeps_every_passage_on_one_side(tmp_path: Path) -> None:
    """scripts/split_mc_qa.py: Cosmos by context, SQuAD by article; nothing lost, nothing
    shared, the same parts on every run."""
    import csv
    import subprocess
    import sys

    from .test_choice import write_cosmos

    data = tmp_path / "shared"
    write_cosmos(data / "mc" / "CosmosQA", n_train=2, n_dev=60)
    write_squad(data / "qa" / "SQuAD", n_train=2, n_dev=40)
    script = Path(__file__).resolve().parents[1] / "scripts" / "split_mc_qa.py"
    for out in ("a", "b"):
        command = [
            sys.executable,
            str(script),
            "--data_dir",
            str(data),
            "--out",
            str(tmp_path / out),
        ]
        subprocess.run(command, check=True, capture_output=True)
    parts = tmp_path / "a" / "CosmosQA"
    rows = {
        n: list(csv.DictReader((parts / n).open(newline=""))) for n in ("train.csv", "valid.csv")
    }
    contexts = [{r["context"] for r in part} for part in rows.values()]
    assert not contexts[0] & contexts[1] and all(contexts)
    assert sum(map(len, rows.values())) == 60
    assert len(load_examples(get_task("cosmosqa"), "train", tmp_path / "a")) == len(
        rows["train.csv"]
    )
    squad = tmp_path / "a"
    train, dev = (load_examples(SQUAD, s, squad) for s in ("train", "validation"))
    assert train.groups is not None and dev.groups is not None
    assert not set(train.groups) & set(dev.groups) and len(train) + len(dev) == 40
    for name in ("CosmosQA/valid.csv", "SQuAD/dev-v1.1.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_task_def_learns_span_in_mt_dnn_names(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_squad(tmp_path / "qa" / "SQuAD") / "SQuAD"
    definition = tmp_path / "tasks.yaml"
    definition.write_text(
        "my_qa:\n  task_type: Span\n  loss: SpanCeCriterion\n  metric_meta: [EmF1]\n"
        f"  data: {{train: {data}/train-v1.1.json, dev: {data}/dev-v1.1.json}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    args = qa_args(tiny_model, tmp_path, out, "--task_def", str(definition))
    args[args.index("squad")] = "my_qa"
    code, _, err = cli(args, capsys)
    assert code == 0, err
    assert {"eval_f1", "eval_exact_match"} <= set(
        json.loads((out / "all_results.json").read_text())
    )
    definition.write_text(definition.read_text().replace("[EmF1]", "[ACC]"))
    code, _, err = cli([*args, "--overwrite_output_dir"], capsys)
    assert code != 0 and "does not fit a Span task" in err
