"""Every registered task reads its published layout; the real GLUE files read completely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smartft.data.dataset import load_examples
from smartft.data.tasks import TASKS, get_task
from smartft.errors import DataError

from .conftest import GLUE


def put(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_mnli_matched_and_mismatched(tmp_path: Path) -> None:
    head = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"
    )
    train = (
        head + "\tlabel1\tgold_label\n0\t1\t1e\tgov\t(a)\t(b)\t(A)\t(B)\tA man .\tA dog .\t"
        "neutral\tneutral\n"
    )
    dev = (
        head + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
        "0\t1\t1e\tgov\t(a)\t(b)\t(A)\t(B)\tA man .\tA dog .\tcontradiction\tneutral\t"
        "contradiction\tcontradiction\tcontradiction\tcontradiction\n"
    )
    put(tmp_path / "MNLI" / "train.tsv", train)
    put(tmp_path / "MNLI" / "dev_matched.tsv", dev)
    put(tmp_path / "MNLI" / "dev_mismatched.tsv", dev)
    put(tmp_path / "MNLI" / "test_matched.tsv", head + "\n0\t1\t1e\tgov\ta\tb\tA\tB\tx .\ty .\n")
    spec = get_task("mnli")
    assert load_examples(spec, "train", tmp_path).labels == [1.0]
    assert load_examples(spec, "validation_mismatched", tmp_path).labels == [2.0]
    test = load_examples(spec, "test_matched", tmp_path, require_labels=False)
    assert test.labels is None and test.texts == [("x .", "y .")]
    assert spec.submission == {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"}


def test_qqp_and_qnli(tmp_path: Path) -> None:
    put(
        tmp_path / "QQP" / "train.tsv",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tWhy ?\tHow ?\t1\n",
    )
    put(
        tmp_path / "QNLI" / "dev.tsv",
        "index\tquestion\tsentence\tlabel\n0\tWho ?\tHim .\tnot_entailment\n",
    )
    qqp = load_examples(get_task("qqp"), "train", tmp_path)
    assert qqp.labels == [1.0] and qqp.ids == ["7"]
    assert load_examples(get_task("qnli"), "validation", tmp_path).labels == [1.0]


def test_snli_skips_no_consensus(tmp_path: Path) -> None:
    rows = [
        {"sentence1": "A .", "sentence2": "B .", "gold_label": "contradiction", "pairID": "p1"},
        {"sentence1": "C .", "sentence2": "D .", "gold_label": "-", "pairID": "p2"},
    ]
    put(tmp_path / "snli_1.0" / "snli_1.0_dev.jsonl", "\n".join(map(json.dumps, rows)) + "\n")
    examples = load_examples(get_task("snli"), "validation", tmp_path)
    assert examples.labels == [2.0] and examples.ids == ["p1"]


def test_scitail_headerless(tmp_path: Path) -> None:
    put(
        tmp_path / "SciTailV1.1" / "tsv_format" / "scitail_1.0_train.tsv",
        "Plants need light .\tLight is needed .\tentails\nA .\tB .\tneutral\n",
    )
    assert load_examples(get_task("scitail"), "train", tmp_path).labels == [0.0, 1.0]


def test_anli_rounds(tmp_path: Path) -> None:
    row = {"uid": "u1", "context": "A .", "hypothesis": "B .", "label": "c", "reason": ""}
    put(tmp_path / "anli_v1.0" / "R2" / "dev.jsonl", json.dumps(row) + "\n")
    spec = get_task("anli_r2")
    assert load_examples(spec, "validation", tmp_path).labels == [2.0]
    assert spec.id2label()[2] == "contradiction"


def test_advglue_ids_match_glue_order(tmp_path: Path) -> None:
    data = {
        "rte": [{"sentence1": "A .", "sentence2": "B .", "label": 1, "idx": 0}],
        "sst2": [{"sentence": "fun .", "label": 7, "idx": 0}],
    }
    put(tmp_path / "AdvGLUE" / "dev.json", json.dumps(data))
    examples = load_examples(get_task("advglue_rte"), "validation", tmp_path)
    assert examples.labels == [1.0]
    assert get_task("rte").labels == ("entailment", "not_entailment")
    with pytest.raises(DataError, match="not an id") as err:
        load_examples(get_task("advglue_sst2"), "validation", tmp_path)
    assert "record 1" in str(err.value)


def test_data_dir_may_be_the_task_folder(tmp_path: Path) -> None:
    put(tmp_path / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    assert len(load_examples(get_task("rte"), "train", tmp_path)) == 1
    with pytest.raises(DataError, match="file not found"):
        load_examples(get_task("wnli"), "train", tmp_path / "missing")


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match="rte"):
        get_task("nope")
    assert get_task("SST-2") is TASKS["sst2"]


OFFICIAL = {
    "cola": (8551, 1043, 1063),
    "sst2": (67349, 872, 1821),
    "mrpc": (3668, 408, 1725),
    "stsb": (5749, 1500, 1379),
    "rte": (2490, 277, 3000),
    "wnli": (635, 71, 146),
}


@pytest.mark.skipif(not GLUE.is_dir(), reason="real GLUE data not present")
@pytest.mark.parametrize("task", sorted(OFFICIAL))
def test_real_glue_files_read_completely(task: str) -> None:
    spec = get_task(task)
    sizes = tuple(
        len(load_examples(spec, split, GLUE, require_labels=split != "test"))
        for split in ("train", "validation", "test")
    )
    assert sizes == OFFICIAL[task]


@pytest.mark.skipif(not GLUE.is_dir(), reason="real GLUE data not present")
def test_real_ax_diagnostic() -> None:
    examples = load_examples(get_task("ax"), "test", GLUE, require_labels=False)
    assert len(examples) == 1104 and examples.labels is None
