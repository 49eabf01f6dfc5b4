"""Out-of-distribution sets: their readers (PAWS, SICK, HANS in their published layouts), how a
model trained on one task scores another, `--ood_tasks` in training and `smartft eval`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from smartft.data.dataset import load_examples
from smartft.data.tasks import get_task
from smartft.errors import ConfigError, DataError
from smartft.transfer import transfer

from .conftest import sentence, train_args
from .test_engine import cli

RTE_LABELS = ("entailment", "not_entailment")


def write_paws(folder: Path, n: int = 12) -> None:
    """PAWS-Wiki as shared: no header, CRLF line ends, `id sentence1 sentence2 label`."""
    rng = random.Random(1)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("dev.tsv", "test.tsv"):
        rows = [f"{i + 1}\t{sentence(rng)}\t{sentence(rng)}\t{i % 2}" for i in range(n)]
        (folder / name).write_bytes(("\r\n".join(rows) + "\r\n").encode())


SICK_HEADER = (
    "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tentailment_AB\t"
    "entailment_BA\tsentence_A_original\tsentence_B_original\tsentence_A_dataset\t"
    "sentence_B_dataset\tSemEval_set"
)


def write_sick(folder: Path) -> None:
    """SICK.txt: one file for every split (SemEval_set), CRLF, no final newline."""
    rng = random.Random(2)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [SICK_HEADER]
    labels = ("ENTAILMENT", "NEUTRAL", "CONTRADICTION")
    for i, split in enumerate(["TRAIN"] * 6 + ["TRIAL"] * 2 + ["TEST"] * 10):
        a, b = sentence(rng), sentence(rng)
        rows.append(
            f"{i + 1}\t{a}\t{b}\t{labels[i % 3]}\t{1 + (i % 9) / 2:.1f}\tA_x_B\tB_x_A\t{a}\t{b}\t"
            f"FLICKR\tFLICKR\t{split}"
        )
    (folder / "SICK.txt").write_bytes("\r\n".join(rows).encode())


def write_anli(folder: Path, n: int = 12) -> None:
    rng = random.Random(3)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "uid": f"u{i}",
            "context": sentence(rng),
            "hypothesis": sentence(rng),
            "label": "enc"[i % 3],
        }
        for i in range(n)
    ]
    (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_hans(folder: Path, n: int = 10) -> None:
    rng = random.Random(4)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["gold_label\tsentence1\tsentence2\tpairID\theuristic"]
    for i in range(n):
        gold = "entailment" if i % 2 else "non-entailment"
        lines.append(f"{gold}\t{sentence(rng)}\t{sentence(rng)}\tex{i}\tlexical_overlap")
    (folder / "heuristics_evaluation_set.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def ood_dir(tmp_path: Path) -> Path:
    root = tmp_path / "ood"
    write_paws(root / "PAWS")
    write_sick(root / "SICK")
    write_anli(root / "anli_v1.0" / "R1")
    write_hans(root / "hans")
    return root


def test_the_readers_take_each_set_in_its_published_layout(ood_dir: Path) -> None:
    paws = load_examples(get_task("paws"), "test", ood_dir)
    assert len(paws) == 12 and paws.labels[:2] == [0.0, 1.0] and paws.ids[0] == "1"
    assert not any(t.endswith("\r") for text in paws.texts for t in text)
    sick = load_examples(get_task("sick"), "test", ood_dir)
    assert len(sick) == 10 and sick.ids[0] == "9"  # TEST rows only
    assert sick.labels is not None and min(sick.labels) >= 1 and max(sick.labels) <= 5
    assert len(load_examples(get_task("sick"), "train", ood_dir)) == 6
    nli = load_examples(get_task("sick_nli"), "validation", ood_dir)
    assert nli.labels == [0.0, 1.0]  # rows 7 and 8: ENTAILMENT, NEUTRAL by their order
    hans = load_examples(get_task("hans"), "validation", ood_dir)
    assert len(hans) == 10 and hans.labels[:2] == [1.0, 0.0]
    empty = ood_dir / "empty"
    empty.mkdir()
    (empty / "SICK.txt").write_text(SICK_HEADER + "\n")
    with pytest.raises(DataError):
        load_examples(get_task("sick"), "test", empty)


def test_a_model_scores_another_task_as_is_or_as_entailment_against_the_rest() -> None:
    mrpc = ("not_equivalent", "equivalent")
    assert transfer(mrpc, get_task("paws")).collapse is None
    assert transfer(None, get_task("sick")).collapse is None
    gold = np.array([0.0, 1.0, 2.0, 0.0])  # entailment, neutral, contradiction, entailment
    anli = transfer(RTE_LABELS, get_task("anli_r1"))
    assert anli.labels(gold).tolist() == [0.0, 1.0, 1.0, 0.0]
    assert anli.scoring.labels == RTE_LABELS and anli.scoring.metrics == ("accuracy",)
    wnli = transfer(("not_entailment", "entailment"), get_task("snli"))  # entailment is id 1
    assert wnli.labels(gold).tolist() == [1.0, 0.0, 0.0, 1.0]
    scitail = transfer(RTE_LABELS, get_task("scitail"))  # entails / neutral
    assert scitail.labels(np.array([0.0, 1.0])).tolist() == [0.0, 1.0]
    hans = transfer(RTE_LABELS, get_task("hans"))  # entailment / non-entailment
    assert hans.labels(np.array([1.0, 0.0])).tolist() == [1.0, 0.0]
    with pytest.raises(ConfigError, match="regression"):
        transfer(RTE_LABELS, get_task("sick"))
    with pytest.raises(ConfigError, match="no out-of-distribution scoring"):
        transfer(mrpc, get_task("anli_r1"))
    with pytest.raises(ConfigError, match="no out-of-distribution scoring"):
        transfer(("entailment", "neutral", "contradiction"), get_task("rte"))


def test_a_run_is_scored_on_out_of_distribution_sets_after_training_and_eval_agrees(
    tiny_model: str,
    glue_dir: Path,
    ood_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "rte"
    extra = ("--ood_tasks", "anli_r1,hans", "--ood_data_dir", str(ood_dir))
    code, _, err = cli(train_args(tiny_model, glue_dir, out, *extra), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert 0 <= results["ood_anli_r1_accuracy"] <= 1 and 0 <= results["ood_hans_accuracy"] <= 1
    evaluate = ["eval", "--model_name_or_path", str(out), "--task_name", "anli_r1"]
    evaluate += ["--data_dir", str(ood_dir), "--max_seq_length", "32"]
    code, stdout, err = cli(evaluate, capsys)
    assert code == 0, err
    scored = json.loads(stdout)
    assert scored["scored_as"] == "entailment against the rest" and scored["examples"] == 12
    assert scored["accuracy"] == pytest.approx(results["ood_anli_r1_accuracy"])
    # an STS-B model on SICK's test split
    sts = tmp_path / "stsb"
    args = train_args(tiny_model, glue_dir, sts, *extra)
    args[args.index("rte")] = "stsb"
    args[args.index("anli_r1,hans")] = "sick"
    code, _, err = cli(args, capsys)
    assert code == 0, err
    results = json.loads((sts / "all_results.json").read_text())
    assert {"ood_sick_pearson", "ood_sick_spearman"} <= set(results)


@pytest.mark.parametrize(
    ("ood", "message"),
    [("sick", "regression"), ("paws", "no out-of-distribution scoring"), ("nope", "unknown task")],
)
def test_an_ood_set_the_model_cannot_score_stops_the_run_before_training(
    ood: str,
    message: str,
    tiny_model: str,
    glue_dir: Path,
    ood_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "x"
    extra = ("--ood_tasks", ood, "--ood_data_dir", str(ood_dir))
    code, _, err = cli(train_args(tiny_model, glue_dir, out, *extra), capsys)
    assert code == 2 and message in err and not out.exists()
