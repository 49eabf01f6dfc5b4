"""Scoring a model on a task it was not trained on: the out-of-distribution sets that say whether
fine-tuning generalized beyond its training distribution (PAWS for an MRPC model, SICK for an
STS-B model, ANLI / SNLI / MNLI / SciTail / HANS / AdvGLUE for an RTE model).

A set is scored as it is when its labels are the model's (PAWS's ids and names are MRPC's) or
both are regression (SICK's relatedness runs 1-5 where STS-B's runs 0-5, which Pearson and
Spearman do not mind). A 2-way NLI model (entailment / not_entailment: RTE, QNLI, WNLI) scores a
2- or 3-way NLI set as entailment against the rest: the set's entailment label is the model's,
every other label (neutral, contradiction, non-entailment) its not_entailment. Anything else is
refused, naming both label sets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from smartft.data.tasks import TaskSpec
from smartft.errors import ConfigError

ENTAILMENT = ("entailment", "entails")
NOT_ENTAILMENT = "not_entailment"


@dataclass(frozen=True)
class Transfer:
    """How a model's outputs are scored on another task's examples."""

    spec: TaskSpec  # the set as read (its own labels)
    scoring: TaskSpec  # what scores the model's outputs (the model's labels)
    # entailment against the rest: the set's entailment id and the model's
    collapse: tuple[int, int] | None = None

    def labels(self, gold: NDArray[np.float64]) -> NDArray[np.float64]:
        """The set's gold labels as the model's label ids."""
        if self.collapse is None:
            return gold
        ours, model = self.collapse
        return np.where(gold == ours, model, 1 - model).astype(np.float64)

    @property
    def description(self) -> str:
        return "entailment against the rest" if self.collapse else "as is"


def _entailment_id(names: tuple[str, ...]) -> int | None:
    found = [i for i, name in enumerate(names) if name.lower() in ENTAILMENT]
    return found[0] if len(found) == 1 else None


def transfer(model_labels: tuple[str, ...] | None, spec: TaskSpec) -> Transfer:
    """How a model with these labels (None: a regression model) scores task `spec`."""
    if model_labels is None or spec.labels is None:
        if model_labels is None and spec.labels is None:
            return Transfer(spec, spec)
        kind = "a score" if model_labels is None else f"labels ({', '.join(model_labels)})"
        raise ConfigError(
            f"task {spec.name} is "
            f"{'regression' if spec.labels is None else 'classification'}, but the model "
            f"predicts {kind}"
        )
    if spec.owns_labels(model_labels):
        return Transfer(spec, spec)
    names = tuple(spec.id2label().values())
    ours, model = _entailment_id(names), _entailment_id(model_labels)
    two_way = len(model_labels) == 2 and NOT_ENTAILMENT in (m.lower() for m in model_labels)
    if two_way and ours is not None and model is not None:
        scoring = replace(spec, labels=model_labels, label_names=(), metrics=("accuracy",))
        return Transfer(spec, scoring, (ours, model))
    raise ConfigError(
        f"the model predicts ({', '.join(model_labels)}) but task {spec.name} has "
        f"({', '.join(names)}): no out-of-distribution scoring maps one onto the other "
        "(same labels, both regression, or a 2-way NLI model on an NLI set)"
    )
