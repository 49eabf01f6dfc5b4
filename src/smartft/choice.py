"""Multiple choice (Cosmos QA, SWAG-like files): each example is a context, a question and k
candidate answers; the model scores every (context, question + answer) pair with one shared
one-output head and the k scores are the example's logits.

The batch holds the k pairs of each example as k consecutive rows (`[B·k, L]` inputs), so the
word-embedding hooks of SMART, ALICE, R3F, FreeLB and NEFTune perturb every pair as they would a
sentence, and a forward hook turns the model's `[B·k, 1]` scores into `[B, k]` logits: the task
loss is cross-entropy over the k answers and every divergence (SMART's R_s and Bregman term) is
the symmetric KL between two distributions over the k answers. The model is the sequence-
classification model with one output (the shape of `AutoModelForMultipleChoice`, for any encoder
or decoder, LoRA included); its config records `smartft_shape: choice` and the number of answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:  # the readers' package imports this module
    from smartft.data.readers import Row


SHAPE_KEY = "smartft_shape"  # the model config's record of its task shape
_NUMBERED = re.compile(r"^(answer|ending|choice|option)(\d+)$")
_LISTS = ("answers", "choices", "endings", "options")


class ChoiceScores:
    """The forward hook that makes a one-output model's `[B·k, 1]` scores `[B, k]` logits. Kept
    in copies of the model (SMART's teacher), since it changes what the model computes."""

    keep_in_copies = True

    def __init__(self, choices: int) -> None:
        self.choices = choices

    def after(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        output.logits = output.logits.reshape(-1, self.choices)
        return output


def score_choices(model: nn.Module, choices: int) -> nn.Module:
    """Install the hook on a one-output sequence-classification model (or a peft model around
    one) and record the shape in its config, so that a saved model is known for what it is."""
    model.register_forward_hook(ChoiceScores(choices).after, with_kwargs=True)
    config = getattr(model, "config", None)
    if config is not None:
        setattr(config, SHAPE_KEY, "choice")
        config.num_choices = choices
    return model


def answer_columns(path: Path, row: Row) -> tuple[str, ...]:
    """Where a row keeps its answers: one list field (`answers`, `choices`, `endings` or
    `options`) or numbered columns (`answer0`, `answer1`, ... or `ending0`, ...) from 0 on."""
    for name in _LISTS:
        if isinstance(row.fields.get(name), list):
            return (name,)
    numbered = sorted(
        (int(m.group(2)), m.group(1), key) for key in row.fields if (m := _NUMBERED.match(str(key)))
    )
    if not numbered:
        raise row.error(
            path,
            "no answers: expected columns answer0, answer1, ... (or ending0, ...) or a list "
            f"field ({', '.join(_LISTS)})",
        )
    prefix = numbered[0][1]
    columns = tuple(key for number, name, key in numbered if name == prefix)
    if [number for number, name, _ in numbered if name == prefix] != list(range(len(columns))):
        raise row.error(path, f"the {prefix} columns must be numbered 0, 1, 2, ... without gaps")
    return columns


def answers_of(path: Path, row: Row, columns: tuple[str, ...], k: int) -> list[str]:
    """The row's k answers, each a non-empty text; a row with another number is refused."""
    if len(columns) == 1 and columns[0] in _LISTS:
        found = row.fields.get(columns[0])
        if not isinstance(found, list):
            raise row.error(path, f"'{columns[0]}' is not a list of answers")
        answers = list(found)
    else:
        answers = [row.fields.get(c) for c in columns]
        while answers and answers[-1] in (None, ""):  # a short row of a numbered file
            answers.pop()
    if len(answers) != k:
        raise row.error(
            path,
            f"has {len(answers)} answers but the task has {k}",
            fix="give every question the same number of answers",
        )
    for number, answer in enumerate(answers):
        if not isinstance(answer, str) or not answer.strip():
            raise row.error(path, f"answer {number} is empty or not text")
    return [str(a) for a in answers]


def label_of(path: Path, row: Row, column: str, k: int) -> int | None:
    """The index of the right answer (None when the row has no label: a test file)."""
    value = row.fields.get(column)
    if value is None or value == "":
        return None
    text = str(value).strip()
    if not re.fullmatch(r"\d+", text) or not 0 <= int(text) < k:
        raise row.error(
            path,
            f"label {value!r} is not an answer index in 0..{k - 1}",
            fix=f"the label is the number of the right answer, from 0 to {k - 1}",
        )
    return int(text)


def answer_ids(k: int) -> tuple[str, ...]:
    """A k-answer task's labels: the answers' numbers."""
    return tuple(str(i) for i in range(k))


def count_answers(path: Path, rows: Sequence[Row]) -> int:
    """k of a custom file: the number of answers of its first row (at least two)."""
    columns = answer_columns(path, rows[0])
    first = rows[0].fields[columns[0]] if len(columns) == 1 else None
    k = len(first) if isinstance(first, list) else len(columns)
    if k < 2:
        raise rows[0].error(path, f"{k} answer: a multiple-choice question needs at least two")
    return k


def encode_choices(
    texts: Sequence[tuple[str, ...]], tokenizer: Any, max_length: int, keys: tuple[str, ...]
) -> dict[str, list[list[list[int]]]]:
    """For each example (context, question, answer_1..answer_k): k token sequences, the
    context first and the question with the answer second; the longer part is cut to fit."""
    firsts, seconds = [], []
    for context, question, *answers in texts:
        for answer in answers:
            firsts.append(context)
            seconds.append(f"{question} {answer}".strip())
    encoded = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    k = len(texts[0]) - 2 if texts else 0
    return {
        key: [encoded[key][i : i + k] for i in range(0, len(firsts), k)]
        for key in keys
        if key in encoded
    }


def check_rows(path: Path, rows: Sequence[Row], columns: Sequence[str]) -> None:
    """Every row has the context and question columns the task reads."""
    for row in rows:
        for column in columns:
            if not isinstance(row.fields.get(column), str):
                raise row.error(path, f"'{column}' is missing or not text")
