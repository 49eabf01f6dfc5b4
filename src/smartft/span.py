"""Extractive question answering (SQuAD v1.1): windows over long contexts, start and end
logits, answers mapped back to character spans, and the official exact-match and F1 metrics.

A context longer than `--max_seq_length` is cut into overlapping windows (`--doc_stride` tokens
of overlap, transformers' run_qa meaning); each window is one training row, labelled with the
tokens where the answer starts and ends, or with position 0 when the answer is not wholly inside
it (the convention of BERT's SQuAD code). A forward hook gives the question-answering model the
view every method understands: `logits` is `[2·B, W]`, each window's start scores then its end
scores (padding masked out), and the labels are the matching positions. The task loss is then
the mean of the start and end cross-entropies, and SMART's R_s and Bregman term are symmetric KL
over the start and the end distributions, with the word embeddings of every window perturbed.

At evaluation each window's best legal span (inside the context, end not before start, at most
`--max_answer_length` tokens; score = start + end logit) competes with its question's other
windows; windows travel whole between processes, so several processes score exactly as one.
"""

from __future__ import annotations

import collections
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from smartft.errors import ConfigError

if TYPE_CHECKING:  # the readers' package imports this module
    from smartft.data.readers import Row

MASKED = -1.0e4  # a padding position's score: far below any real one, finite (no NaN in a KL)
N_BEST = 20  # start and end candidates tried per window, as in BERT's SQuAD code


# ----------------------------------------------------------------------------- reading


def reference_answers(path: Path, row: Row, column: str) -> list[tuple[str, int]]:
    """A question's answers as (text, start), each checked against its context."""
    answers = row.fields.get(column)
    if not isinstance(answers, list):
        raise row.error(path, f"question {row.fields.get('id')!r}: no '{column}' list")
    context, found = row.fields["context"], []
    for answer in answers:
        text = answer.get("text") if isinstance(answer, dict) else None
        start = answer.get("answer_start") if isinstance(answer, dict) else None
        if not isinstance(text, str) or not text or not isinstance(start, int):
            raise row.error(
                path, f"question {row.fields.get('id')!r}: an answer needs text and answer_start"
            )
        if context[start : start + len(text)] != text:
            raise row.error(
                path,
                f"question {row.fields.get('id')!r}: answer {text!r} is not at character "
                f"{start} of its context (found {context[start : start + len(text)]!r})",
            )
        found.append((text, start))
    return found


# ----------------------------------------------------------------------------- windows


@dataclass
class SpanLayout:
    """Where each window comes from: its question, and for each of its tokens the characters of
    the context it covers (None outside the context); the contexts, the reference answers."""

    example_of: list[int]
    offsets: list[list[tuple[int, int] | None]]
    contexts: list[str]
    answers: list[list[tuple[str, int]]] | None
    ids: list[str]
    max_answer_length: int = 30

    def predictions(self, outputs: NDArray[np.float64]) -> dict[str, str]:
        """Each question's answer: the best legal span over its windows (`outputs`: one row
        per window, start scores then end scores, `[N, 2, W]`)."""
        if len(outputs) != len(self.example_of):
            raise ValueError(f"{len(outputs)} window outputs for {len(self.example_of)} windows")
        best: dict[int, tuple[float, str]] = {}
        for window, example in enumerate(self.example_of):
            found = best_span(
                outputs[window, 0], outputs[window, 1], self.offsets[window], self.max_answer_length
            )
            if found is None:
                continue
            score, (start, end) = found
            if example not in best or score > best[example][0]:
                best[example] = (score, self.contexts[example][start:end])
        return {ident: best.get(i, (0.0, ""))[1] for i, ident in enumerate(self.ids)}


def best_span(
    starts: NDArray[np.float64],
    ends: NDArray[np.float64],
    offsets: Sequence[tuple[int, int] | None],
    max_answer_length: int,
) -> tuple[float, tuple[int, int]] | None:
    """The highest-scoring legal span of one window as (score, character span), or None."""
    width = len(offsets)
    starts, ends = starts[:width], ends[:width]
    top_starts = np.argsort(starts)[::-1][:N_BEST]
    top_ends = np.argsort(ends)[::-1][:N_BEST]
    found: tuple[float, tuple[int, int]] | None = None
    for s in top_starts:
        for e in top_ends:
            first, last = offsets[s], offsets[e]
            if first is None or last is None or e < s or e - s + 1 > max_answer_length:
                continue
            score = float(starts[s] + ends[e])
            if found is None or score > found[0]:
                found = (score, (first[0], last[1]))
    return found


def encode_spans(
    examples: Any,
    tokenizer: Any,
    max_length: int,
    keys: tuple[str, ...],
    doc_stride: int,
    max_answer_length: int,
) -> tuple[dict[str, list[list[int]]], list[list[int]] | None, SpanLayout]:
    """Windows of every (question, context): token inputs, the [start, end] label of each
    window (from the first reference answer; 0, 0 when it is not wholly inside), the layout."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "span tasks need a fast tokenizer (one with a tokenizer.json), to map tokens back "
            "to characters; the model's folder has only a slow one"
        )
    questions = [question.lstrip() for question, _ in examples.texts]
    contexts = [context for _, context in examples.texts]
    try:
        encoded = tokenizer(
            questions,
            contexts,
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
    except Exception as err:  # the tokenizer's own check: question + stride do not fit
        raise ConfigError(
            f"cannot cut the contexts into windows of {max_length} tokens with --doc_stride "
            f"{doc_stride}: {err}; raise --max_seq_length or lower --doc_stride"
        ) from None
    example_of = list(encoded["overflow_to_sample_mapping"])
    offsets: list[list[tuple[int, int] | None]] = []
    labels: list[list[int]] = []
    for window, example in enumerate(example_of):
        sequence = encoded.sequence_ids(window)
        spans = [
            (int(a), int(b)) if part == 1 else None
            for part, (a, b) in zip(sequence, encoded["offset_mapping"][window], strict=True)
        ]
        offsets.append(spans)
        if examples.answers is not None and examples.answers[example]:
            text, start = examples.answers[example][0]
            labels.append(list(answer_tokens(spans, start, start + len(text))))
    encodings = {k: encoded[k] for k in keys if k in encoded}
    layout = SpanLayout(
        example_of, offsets, contexts, examples.answers, examples.ids, max_answer_length
    )
    return encodings, (labels if examples.answers is not None else None), layout


def answer_tokens(spans: Sequence[tuple[int, int] | None], start: int, end: int) -> tuple[int, int]:
    """The first and last token of the characters [start, end) in a window, or (0, 0) when the
    window does not hold all of them."""
    inside = [i for i, span in enumerate(spans) if span is not None and span[1] > span[0]]
    if not inside or spans[inside[0]][0] > start or spans[inside[-1]][1] < end:  # type: ignore[index]
        return 0, 0
    first = max(i for i in inside if spans[i][0] <= start)  # type: ignore[index]
    last = min(i for i in inside if spans[i][1] >= end)  # type: ignore[index]
    return first, last


# ----------------------------------------------------------------------------- the model's view


class SpanScores:
    """The hooks that give a question-answering model `logits` of shape `[2·B, W]`: each window's
    start scores then its end scores, padding masked. Kept in copies of the model."""

    keep_in_copies = True

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None

    def before(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        self.mask = kwargs.get("attention_mask")
        return args, kwargs

    def after(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        mask, self.mask = self.mask, None
        scores = torch.stack((output.start_logits, output.end_logits), dim=1)
        if mask is not None:
            scores = scores.masked_fill(~mask.bool().unsqueeze(1), MASKED)
        output.logits = scores.reshape(-1, scores.shape[-1])
        return output


def score_spans(model: nn.Module) -> nn.Module:
    """Install the hooks on a question-answering model (or a peft model around one)."""
    hooks = SpanScores()
    model.register_forward_pre_hook(hooks.before, with_kwargs=True)
    model.register_forward_hook(hooks.after, with_kwargs=True)
    return model


def window_outputs(
    accelerator: Any, output: Any, batch: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    """Each window's `[2, length]` start and end scores, from every process in order (whole
    windows, so a question's windows score the same however the processes split them)."""
    scores = torch.stack((output.start_logits, output.end_logits), dim=1).float().cpu().double()
    lengths = batch["attention_mask"].sum(-1).tolist()
    windows = [scores[i, :, : int(n)] for i, n in enumerate(lengths)]
    if accelerator.num_processes > 1:
        windows = accelerator.gather_for_metrics(windows, use_gather_object=True)
    return list(windows)


def stack_windows(windows: Sequence[torch.Tensor]) -> NDArray[np.float64]:
    """`[N, 2, W]` from windows of several lengths, the missing positions at -inf."""
    width = max(w.shape[-1] for w in windows)
    out = np.full((len(windows), 2, width), -np.inf)
    for i, w in enumerate(windows):
        out[i, :, : w.shape[-1]] = w.numpy()
    return out


# ----------------------------------------------------------------------------- metrics


def normalize_answer(text: str) -> str:
    """The official v1.1 normalisation: lower case, no punctuation, no articles (a, an, the),
    single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(predicted) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict[str, str], answers: dict[str, list[str]]) -> dict[str, float]:
    """Exact match and token F1 (as fractions; the official script prints them × 100), each the
    best over a question's reference answers, averaged over questions."""
    if not answers:
        raise ValueError("no questions to score")
    exact = f1 = 0.0
    for ident, truths in answers.items():
        predicted = predictions.get(ident, "")
        exact += max(float(normalize_answer(predicted) == normalize_answer(t)) for t in truths)
        f1 += max(token_f1(predicted, t) for t in truths)
    return {"f1": f1 / len(answers), "exact_match": exact / len(answers)}


def score_span_layout(outputs: NDArray[np.float64], layout: SpanLayout) -> dict[str, float]:
    """A span task's metrics from its windows' outputs."""
    if layout.answers is None:
        raise ValueError("scoring needs the questions' reference answers")
    predicted = layout.predictions(outputs)
    truths = {i: [t for t, _ in a] for i, a in zip(layout.ids, layout.answers, strict=True)}
    return squad_metrics(predicted, truths)


def write_predictions(path: Path, predictions: dict[str, str]) -> None:
    """`{question id: answer text}`, the file the official evaluator reads."""
    path.write_text(json.dumps(predictions, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
