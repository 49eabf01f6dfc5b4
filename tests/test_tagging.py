"""Token classification: the CoNLL reader's strictness, subword alignment, entity-level scoring
(hand-computed and against seqeval), token-level SMART over labelled tokens only, and the
`wnut17` task end to end (train, eval, predict to CoNLL) with the methods that perturb."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from smartft.data.dataset import Collator, Examples, load_examples, tokenize
from smartft.data.readers import read_conll
from smartft.data.tasks import WNUT17_TAGS, get_task
from smartft.errors import DataError
from smartft.methods import SetupInfo, get_method
from smartft.regularizer import SmartConfig
from smartft.tagging import TagLayout, entities, label_tokens, score_tags, tag_metrics

from .conftest import WORDS, train_args
from .test_engine import cli
from .test_smart import tiny_config

WNUT = get_task("wnut17")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the reader


def test_reader_takes_tab_lines_and_every_kind_of_sentence_break(tmp_path: Path) -> None:
    # WNUT-17's train file ends sentences with a lone TAB as often as with an empty line
    path = write(tmp_path / "a.conll", "I\tO\nlove\tO\n\t\nParis\tB-location\n\nOk\tO\n \n\n")
    rows = read_conll(path)
    assert [r.fields["tokens"] for r in rows] == [["I", "love"], ["Paris"], ["Ok"]]
    assert [r.fields["tags"] for r in rows] == [["O", "O"], ["B-location"], ["O"]]
    assert [r.line for r in rows] == [1, 4, 6]


def test_reader_takes_conll2003_space_separated_columns(tmp_path: Path) -> None:
    text = (
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "-DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\n"
    )
    rows = read_conll(write(tmp_path / "b.conll", text))
    assert [r.fields["tokens"] for r in rows] == [["EU", "rejects"], ["Peter"]]
    assert [r.fields["tags"] for r in rows] == [["B-ORG", "O"], ["B-PER"]]


def test_reader_takes_untagged_words(tmp_path: Path) -> None:
    rows = read_conll(write(tmp_path / "c.conll", "a\nb\n\nc\n"))
    assert [r.fields for r in rows] == [{"tokens": ["a", "b"]}, {"tokens": ["c"]}]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("a\tO\nb\tO\textra\n", 2, "ragged line: 3 TAB-separated columns"),
        ("a\tO\nb O\n", 2, "ragged line: 1 TAB-separated columns"),
        ("EU NNP B-ORG\nrejects O\n", 2, "ragged line: 2 columns"),
        ("a\tO\n\tO\n", 2, "empty word"),
        ("a\tO\nb\t \n", 2, "empty tag"),
        ("\n\t\n-DOCSTART-\tO\n\n", None, "no sentences"),
    ],
)
def test_reader_refuses_malformed_files(
    tmp_path: Path, text: str, line: int | None, problem: str
) -> None:
    with pytest.raises(DataError) as err:
        read_conll(write(tmp_path / "bad.conll", text))
    assert problem in str(err.value)
    assert err.value.line == line


def test_unknown_tags_are_refused_with_their_line(tmp_path: Path) -> None:
    folder = tmp_path / "WNUT17"
    folder.mkdir()
    write(folder / "wnut17train.conll", "a\tO\n\nb\tO\nc\tB-city\n")
    with pytest.raises(DataError) as err:
        load_examples(WNUT, "train", tmp_path)
    assert "unknown tag 'B-city'" in str(err.value) and err.value.line == 4


# ----------------------------------------------------------------------------- alignment


def test_first_subword_of_each_word_carries_its_tag(tiny_model: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    # "dog." is one word and two subwords: only "dog" is labelled
    examples = Examples(
        Path("x"), [("the", "dog.", "runs")], None, ["1"], [[0, 3, 4]], shape="token"
    )
    features = tokenize(examples, tokenizer, 32, False)
    assert features.encodings["token_mask"] == [[0, 1, 1, 0, 1, 0]]
    assert features.labels == [[0, 3, 4]]
    cut = tokenize(examples, tokenizer, 4, False)  # [CLS] the dog [SEP]: "runs" is cut off
    assert cut.encodings["token_mask"] == [[0, 1, 1, 0]] and cut.labels == [[0, 3]]
    assert cut.layout is not None and cut.layout.positions == [[0, 1]]
    batch = Collator(0, False)([cut[0], features[0]])
    assert batch["labels"].tolist() == [0, 3, 0, 3, 4]  # labelled tokens, in reading order
    assert batch["token_mask"].tolist() == [[0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 1, 0]]
    # a batch whose words all tokenized to nothing still has integer (empty) tags
    empty = {"input_ids": [2, 3], "attention_mask": [1, 1], "token_mask": [0, 0], "labels": []}
    assert Collator(0, False)([empty])["labels"].dtype == torch.long


def test_words_the_model_never_saw_count_as_missed() -> None:
    tags = list(WNUT17_TAGS)
    person = tags.index("B-person")
    # word 2 was cut by truncation
    layout = TagLayout(positions=[[0, 1]], lengths=[3], gold=[[0, 0, person]])
    outputs = np.eye(len(tags))[[0, 0]]  # "O", "O"
    assert layout.sentences(outputs.argmax(-1), tags) == [["O", "O", "O"]]
    assert score_tags(outputs, layout, tags)["recall"] == 0.0


# ----------------------------------------------------------------------------- scoring


def test_entities_follow_conlleval() -> None:
    assert entities(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert entities(["I-PER", "I-PER"]) == {("PER", 0, 1)}  # an I- without B- opens one
    assert entities(["B-PER", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 1)}
    assert entities(["B-PER", "B-PER"]) == {("PER", 0, 0), ("PER", 1, 1)}
    assert entities(["S-PER", "B-LOC", "E-LOC"]) == {("PER", 0, 0), ("LOC", 1, 2)}


def test_entity_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG"]]
    # gold: 3 entities; predicted: 2; one exact match (PER 0-1)
    scores = tag_metrics(gold, pred)
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert scores["accuracy"] == pytest.approx(3 / 6)  # 3 of 4 words, then 0 of 2
    assert tag_metrics([["O"]], [["O"]])["f1"] == 0.0  # no entities at all: 0, not NaN


def test_entity_scores_equal_seqeval_on_random_sequences() -> None:
    metrics = pytest.importorskip("seqeval.metrics")
    rng = random.Random(0)
    tags = ["O", "O", "O", "B-a", "I-a", "B-b", "I-b", "I-c"]  # ill-formed I- starts included
    for _ in range(50):
        lengths = [rng.randint(1, 12) for _ in range(rng.randint(1, 6))]
        gold = [[rng.choice(tags) for _ in range(n)] for n in lengths]
        pred = [[t if rng.random() < 0.6 else rng.choice(tags) for t in s] for s in gold]
        ours = tag_metrics(gold, pred)
        assert ours["f1"] == pytest.approx(metrics.f1_score(gold, pred, zero_division=0))
        assert ours["precision"] == pytest.approx(
            metrics.precision_score(gold, pred, zero_division=0)
        )
        assert ours["recall"] == pytest.approx(metrics.recall_score(gold, pred, zero_division=0))


# ----------------------------------------------------------------------------- token-level SMART


def tagger(seed: int = 0) -> Any:
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    return label_tokens(BertForTokenClassification(tiny_config(num_labels=5)).train())


def tag_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 40, (3, 8), generator=generator)
    mask = torch.ones_like(ids)
    mask[2, 5:] = 0
    token_mask = torch.zeros_like(ids)
    token_mask[0, [1, 2, 4]] = 1
    token_mask[1, [1, 3, 5, 6]] = 1
    token_mask[2, [1, 2]] = 1
    labels = torch.randint(0, 5, (int(token_mask.sum()),), generator=generator)
    return {"input_ids": ids, "attention_mask": mask, "token_mask": token_mask, "labels": labels}


def smart_terms(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    configs = {SmartConfig: SmartConfig(smart_eps=1e-2, smart_step_size=1e-2)}
    method = get_method("smart")(configs)
    method.setup(model, SetupInfo(total_steps=10, regression=False, seed=0))
    torch.manual_seed(1)
    method.before_forward(model, batch, lambda loss: None)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits
    assert logits.shape == (len(batch["labels"]), 5)  # one row per labelled token
    return {k: float(v.detach()) for k, v in method.loss_terms(model, batch, logits).items()}


def test_token_level_smart_sees_labelled_tokens_only() -> None:
    batch = tag_batch()
    reference = smart_terms(tagger(), batch)
    assert set(reference) == {"loss_smart", "loss_bregman"} and min(reference.values()) > 0

    def shifted(where: torch.Tensor) -> dict[str, float]:
        """The terms when the head's outputs at `where` are pushed far away."""
        model = tagger()
        noise = torch.randn((*where.shape, 5), generator=torch.Generator().manual_seed(2))
        push = where.float()[..., None] * 30.0 * noise  # no draw from the global generator
        model.classifier.register_forward_hook(lambda m, a, out: out + push)
        return smart_terms(model, batch)

    unlabelled = (batch["token_mask"] == 0) & (batch["attention_mask"] == 1)
    assert shifted(unlabelled) == pytest.approx(reference, rel=1e-6, abs=1e-9)
    assert shifted(batch["token_mask"] == 1) != pytest.approx(reference)  # the test can fail


def test_smarts_teacher_keeps_the_tagging_hooks() -> None:
    from smartft.teacher import MeanTeacher

    model = tagger()
    teacher = MeanTeacher(model)
    batch = tag_batch()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    assert teacher.outputs(inputs).shape == (len(batch["labels"]), 5)


# ----------------------------------------------------------------------------- end to end


def write_wnut(root: Path, seed: int = 0, dev: int = 12) -> Path:
    """A WNUT17 folder with the real file names: words from the tiny vocabulary, tagged."""
    rng = random.Random(seed)
    folder = root / "WNUT17"
    folder.mkdir(parents=True)
    names = {"dog": "person", "cat": "location", "house": "product", "park": "group"}

    def sentences(n: int, breaks: str) -> str:
        out = []
        for _ in range(n):
            lines = []
            for word in (rng.choice(WORDS) for _ in range(rng.randint(3, 9))):
                kind = names.get(word)
                lines.append(f"{word}\t{'B-' + kind if kind else 'O'}")
            out.append("\n".join(lines) + "\n" + rng.choice(breaks))
        return "".join(out)

    write(folder / "wnut17train.conll", sentences(40, ["\n", "\t\n"]))
    write(folder / "emerging.dev.conll", sentences(dev, ["\n"]))
    write(folder / "emerging.test.annotated", sentences(8, ["\n"]))
    return root


def ner_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    args = train_args(model, data, out, "--num_train_epochs", "1", *extra)
    args[args.index("rte")] = "wnut17"
    return args


@pytest.mark.parametrize(
    "flags",
    [
        ["--method", "smart", "--smart_eps", "1e-2"],
        ["--method", "r3f"],
        ["--method", "alice"],
        ["--method", "freelb", "--freelb_start_step", "1"],
        ["--method", "smart", "--peft", "lora", "--lora_target_modules", "query,value"],
    ],
    ids=["smart", "r3f", "alice", "freelb", "smart-lora"],
)
def test_wnut17_trains_scores_and_predicts_conll(
    flags: list[str], tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_wnut(tmp_path / "ner")
    out = tmp_path / "run"
    code, _, err = cli(ner_args(tiny_model, data, out, *flags, "--do_predict"), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy"} <= set(results)
    common = ["--model_name_or_path", str(out), "--task_name", "wnut17", "--data_dir", str(data)]
    for split, prefix in (("validation", "eval"), ("test", "test")):
        code, text, err = cli(["eval", *common, "--split", split], capsys)
        assert code == 0, err
        assert json.loads(text)["f1"] == pytest.approx(results[f"{prefix}_f1"])
    code, _, err = cli(["predict", *common, "--output_dir", str(tmp_path / "pred")], capsys)
    assert code == 0, err
    written = read_conll(tmp_path / "pred" / "wnut17-test.conll")
    gold = read_conll(data / "WNUT17" / "emerging.test.annotated")
    assert [r.fields["tokens"] for r in written] == [r.fields["tokens"] for r in gold]
    assert all(t in WNUT17_TAGS for r in written for t in r.fields["tags"])


def test_custom_conll_files_make_a_tagging_task(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_wnut(tmp_path / "ner") / "WNUT17"
    train = tmp_path / "train.conll"
    dev = tmp_path / "dev.conll"
    train.write_bytes((folder / "wnut17train.conll").read_bytes())
    dev.write_bytes((folder / "emerging.dev.conll").read_bytes())
    out = tmp_path / "run"
    args = ner_args(tiny_model, tmp_path, out)
    at = args.index("--task_name")
    del args[at : at + 4]  # no task name, no data dir
    code, _, err = cli([*args, "--train_file", str(train), "--validation_file", str(dev)], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and len(config["id2label"]) == 5


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--method", "smart", "--smart_fraction", "0.5"], "--smart_fraction below 1"),
        (["--task_name", "wnut17,rte"], "multi-task training takes sentence tasks only"),
        (["--do_predict", "--holdout_fraction", "0.2"], "must not see the test set"),
    ],
)
def test_what_tagging_cannot_do_is_refused(
    flags: list[str],
    message: str,
    tiny_model: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from .conftest import write_rte

    data = write_wnut(tmp_path / "ner")
    write_rte(data / "RTE")
    code, _, err = cli(ner_args(tiny_model, data, tmp_path / "run", *flags), capsys)
    assert code == 2 and message in err


def test_byte_level_tokenizers_see_each_word_after_a_space(tmp_path: Path) -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    from smartft.modeling import load_tokenizer

    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=400, min_frequency=1)
    trained.save(str(tmp_path / "tokenizer.json"))
    RobertaTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json")).save_pretrained(tmp_path)
    for words, starts in ((False, "d"), (True, "Ġd")):  # Ġ: the byte-level mark of a space
        tokenizer = load_tokenizer(tmp_path, words=words)
        encoded = tokenizer([["the", "dog"]], is_split_into_words=True)
        pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
        assert pieces[encoded.word_ids(0).index(1)].startswith(starts)
