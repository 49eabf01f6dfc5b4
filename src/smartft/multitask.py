"""Multi-task learning (MT-DNN): one encoder shared by a head per task, batches of one task each.

The model is one Hugging Face sequence-classification model per task whose encoders are tied to
a single module, so every architecture keeps its own head and every method (perturbations on the
shared word embeddings, a teacher over encoder and heads, masks over the encoder's layers) works
on it unchanged. A batch carries `task_index`; the model routes it to that task's head.

Sampling (`--task_sampling`): `proportional` (mt-dnn's default: every batch of every task once per
epoch, in a random order, so tasks are drawn in proportion to their size), `ratio` (mt-dnn's
`--ratio`: the auxiliary tasks' batches are capped at `task_ratio` times the first task's), and
`temperature` (each batch's task drawn with probability ∝ size^(1/T)). The order of an epoch is a
function of the seed and the epoch only, so a resumed run skips to where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from smartft.data.dataset import BatchSampler, Collator, Features
from smartft.errors import ConfigError

HEADS = "heads"
HEAD_WEIGHTS = "head.safetensors"


class MultiTaskModel(nn.Module):
    """Per-task sequence-classification models sharing one encoder."""

    def __init__(self, models: dict[str, Any]) -> None:
        super().__init__()
        first = next(iter(models.values()))
        self.prefix: str = first.base_model_prefix
        shared = getattr(first, self.prefix)
        for model in models.values():
            setattr(model, self.prefix, shared)
        self.tasks = nn.ModuleDict(models)
        self.names = list(models)
        self.config = first.config  # what methods read (hidden size, ...)

    @property
    def encoder(self) -> nn.Module:
        return getattr(self.tasks[self.names[0]], self.prefix)  # type: ignore[no-any-return]

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()  # type: ignore[operator,no-any-return]

    def forward(self, task_index: torch.Tensor, **inputs: Any) -> Any:
        """The task's model on a batch of that task (every row has the same `task_index`)."""
        return self.tasks[self.names[int(task_index[0])]](**inputs)

    def head_state(self, task: str) -> dict[str, torch.Tensor]:
        """The task's own parameters and buffers: everything but the shared encoder."""
        return {
            k: v.detach().contiguous()
            for k, v in self.tasks[task].state_dict().items()
            if not k.startswith(self.prefix + ".")
        }

    def save(self, out: Path) -> None:
        """The encoder in Hugging Face format (`AutoModel` loads it) and `heads/TASK/`: each
        task's config (labels) and head weights."""
        self.encoder.save_pretrained(out)  # type: ignore[operator]
        for task in self.names:
            folder = out / HEADS / task
            folder.mkdir(parents=True, exist_ok=True)
            model: Any = self.tasks[task]
            model.config.save_pretrained(folder)
            save_file(self.head_state(task), str(folder / HEAD_WEIGHTS))


def saved_head(folder: Path, task: str) -> Path | None:
    """The head a multi-task run saved for `task`, if the folder is such a run and has one."""
    path = folder / HEADS / task / HEAD_WEIGHTS
    return path if path.is_file() else None


def trained_heads(folder: Path) -> list[str]:
    """The tasks a multi-task run saved heads for (none: not such a run)."""
    heads = folder / HEADS
    if not heads.is_dir():
        return []
    return sorted(p.parent.name for p in heads.glob(f"*/{HEAD_WEIGHTS}"))


def load_head(model: nn.Module, path: Path) -> None:
    """Put a multi-task run's head for this task into a single-task model."""
    state = load_file(str(path))
    missing = [k for k in state if k not in model.state_dict()]
    if missing:
        raise ConfigError(f"{path}: the head does not fit this model ({', '.join(missing[:3])})")
    model.load_state_dict(state, strict=False)


class MultiTaskFeatures(torch.utils.data.Dataset[dict[str, Any]]):
    """The tasks' features one after another; every item knows its task."""

    def __init__(self, features: Sequence[Features]) -> None:
        self.parts = list(features)
        self.offsets = [0]
        for part in self.parts:
            self.offsets.append(self.offsets[-1] + len(part))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        task = next(t for t in range(len(self.parts)) if index < self.offsets[t + 1])
        return {**self.parts[task][index - self.offsets[task]], "task_index": task}


class TaskItems(torch.utils.data.Dataset[dict[str, Any]]):
    """One task's features, every item marked with the task's index."""

    def __init__(self, features: Features, task: int) -> None:
        self.features, self.task = features, task

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.features[index], "task_index": self.task}


class MultiTaskCollator:
    """Pads a one-task batch with that task's collator and adds `task_index`."""

    def __init__(self, collators: Sequence[Collator]) -> None:
        self.collators = list(collators)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        task = items[0]["task_index"]
        batch: dict[str, torch.Tensor] = self.collators[task](
            [{k: v for k, v in i.items() if k != "task_index"} for i in items]
        )
        batch["task_index"] = torch.full((len(items),), task, dtype=torch.long)
        return batch


class TaskSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of one task each, over `MultiTaskFeatures`; seeded and epoch-aware like
    `BatchSampler` (its `skip` resumes mid-epoch)."""

    def __init__(
        self,
        samplers: Sequence[BatchSampler],
        offsets: Sequence[int],
        scheme: str,
        seed: int,
        ratio: float = 1.0,
        temperature: float = 1.0,
    ) -> None:
        self.samplers, self.offsets = list(samplers), list(offsets)
        self.scheme, self.seed, self.ratio, self.temperature = scheme, seed, ratio, temperature
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def counts(self) -> list[int]:
        """Batches per task in an epoch."""
        sizes = [len(s) for s in self.samplers]
        if self.scheme == "ratio":
            cap = max(1, math.floor(self.ratio * sizes[0]))
            return [sizes[0], *(min(n, cap) for n in sizes[1:])]
        return sizes

    def __len__(self) -> int:
        return sum(self.counts())

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        yield from self.batches()[skip:]

    def order(self, generator: torch.Generator) -> list[int]:
        """The task of each batch slot of this epoch."""
        counts = self.counts()
        if self.scheme == "temperature":
            weights = torch.tensor(
                [n ** (1.0 / self.temperature) for n in counts], dtype=torch.float64
            )
            draws = torch.multinomial(weights, sum(counts), replacement=True, generator=generator)
            return [int(t) for t in draws]
        slots = [t for t, n in enumerate(counts) for _ in range(n)]
        return [slots[i] for i in torch.randperm(len(slots), generator=generator).tolist()]

    def batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1000033 + self.epoch)
        streams = [self._stream(t) for t in range(len(self.samplers))]
        return [[self.offsets[t] + i for i in next(streams[t])] for t in self.order(generator)]

    def _stream(self, task: int) -> Iterator[list[int]]:
        """The task's batches, over again as often as the scheme draws more than it has."""
        sampler, epoch = self.samplers[task], self.epoch
        round_ = 0
        while True:
            sampler.set_epoch(epoch * 1009 + round_ if round_ else epoch)
            yield from sampler.batches()
            round_ += 1


def parse_tasks(value: str | None) -> list[str]:
    """`rte,mrpc` as task names; a name given twice is an error."""
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--task_name names {', '.join(repeated)} more than once")
    return names
