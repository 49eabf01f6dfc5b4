"""Token classification (named-entity recognition and other tagging): the model's view of the
labelled tokens, entity-level scoring, and CoNLL output.

A tagging model is an ordinary Hugging Face token-classification model with two hooks: its forward
takes one more input, `token_mask` (1 on the first subword of every word that carries a tag), and
returns the logits of those tokens only, `[N, C]` in reading order. Everything downstream (the
task loss, SMART's R_s, the Bregman teacher, R3F, ALICE, FreeLB) then sees an N-row
classification problem: each divergence is over the tag distribution, over labelled tokens only,
averaged per token. Padding, special tokens and continuation subwords cannot move any loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

TOKEN_MASK = "token_mask"


class LabelledTokens:
    """The pair of hooks that make a token-classification model tagging-ready (see the module's
    docstring). `keep_in_copies`: a copy of the model (SMART's teacher) keeps them, because
    they change what the model computes, unlike a perturbation hook."""

    keep_in_copies = True

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None

    def before(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        self.mask = kwargs.pop(TOKEN_MASK, None)
        return args, kwargs

    def after(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        mask, self.mask = self.mask, None
        if mask is not None:
            output.logits = output.logits[mask.bool()]
        return output


def label_tokens(model: nn.Module) -> nn.Module:
    """Install the hooks on a token-classification model (or a peft model around one)."""
    hooks = LabelledTokens()
    model.register_forward_pre_hook(hooks.before, with_kwargs=True)
    model.register_forward_hook(hooks.after, with_kwargs=True)
    return model


def keeps_in_copies(hook: Any) -> bool:
    """Whether a hook must survive when a model is copied (see `LabelledTokens`)."""
    owner = getattr(hook, "__self__", hook)
    return bool(getattr(owner, "keep_in_copies", False))


# ----------------------------------------------------------------------------- entity scoring


def _split(tag: str) -> tuple[str, str]:
    """("B", "person") from "B-person"; ("O", "") from "O"; a bare "B" has the empty type."""
    if tag == "O" or not tag:
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix[:1], kind


def _ends(prev: str, prev_kind: str, tag: str, kind: str) -> bool:
    """conlleval's rule: a chunk ends between the previous word and this one."""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev != "O" and prev_kind != kind


def _starts(prev: str, prev_kind: str, tag: str, kind: str) -> bool:
    """conlleval's rule: a chunk starts at this word (an I- after O or another type starts one)."""
    if tag in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and tag in ("I", "E"):
        return True
    return tag != "O" and prev_kind != kind


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first, last) spans of one sentence's BIO / IOBES tags, read as conlleval and
    seqeval's default mode read them (lenient: an I- tag without its B- still opens an entity)."""
    found = set()
    prev, prev_kind, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        now, kind = _split(tag)
        if _ends(prev, prev_kind, now, kind):
            found.add((prev_kind, begin, i - 1))
        if _starts(prev, prev_kind, now, kind):
            begin = i
        prev, prev_kind = now, kind
    return found


def tag_metrics(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level precision, recall and F1 (exact span and type, micro-averaged over types,
    as seqeval computes them) and word-level accuracy, over sentences."""
    hits = n_pred = n_gold = right = words = 0
    for true, pred in zip(gold, predicted, strict=True):
        if len(true) != len(pred):
            raise ValueError(f"a sentence has {len(true)} gold tags but {len(pred)} predictions")
        spans_true, spans_pred = entities(true), entities(pred)
        hits += len(spans_true & spans_pred)
        n_pred += len(spans_pred)
        n_gold += len(spans_true)
        right += sum(a == b for a, b in zip(true, pred, strict=True))
        words += len(true)
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = right / words if words else float("nan")
    return {"f1": f1, "precision": precision, "recall": recall, "accuracy": accuracy}


@dataclass
class TagLayout:
    """Where a split's labelled tokens sit: for each sentence, the index of the word each model
    output belongs to (words cut by --max_seq_length, or that tokenize to nothing, have none and
    are predicted "O"), the sentence's length in words, and its gold tag ids (None unlabelled)."""

    positions: list[list[int]]
    lengths: list[int]
    gold: list[list[int]] | None = None

    def sentences(self, ids: NDArray[np.int64], labels: Sequence[str]) -> list[list[str]]:
        """Flat per-token predictions (class ids) back to one tag list per sentence."""
        expected = sum(len(p) for p in self.positions)
        if len(ids) != expected:
            raise ValueError(f"{len(ids)} token predictions for {expected} labelled tokens")
        out, start = [], 0
        for words, length in zip(self.positions, self.lengths, strict=True):
            tags = ["O"] * length
            for word, label in zip(words, ids[start : start + len(words)], strict=True):
                tags[word] = labels[int(label)]
            out.append(tags)
            start += len(words)
        return out


def score_tags(
    outputs: NDArray[np.float64], layout: TagLayout, labels: Sequence[str]
) -> dict[str, float]:
    """Entity metrics of a split from the model's per-token outputs; the layout's gold tags are
    whole sentences, so an entity the model never saw (cut by truncation) counts as missed."""
    if layout.gold is None:
        raise ValueError("scoring needs the sentences' gold tags")
    predicted = layout.sentences(outputs.argmax(-1), labels)
    truth = [[labels[t] for t in sentence] for sentence in layout.gold]
    return tag_metrics(truth, predicted)


def write_conll(path: Path, words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> None:
    """`word<TAB>tag` lines, an empty line after each sentence (readable by the CoNLL reader)."""
    lines: list[str] = []
    for sentence, predicted in zip(words, tags, strict=True):
        lines.extend(f"{w}\t{t}" for w, t in zip(sentence, predicted, strict=True))
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
