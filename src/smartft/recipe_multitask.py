"""`smartft train --task_name rte,mrpc,stsb,cola`: the recipe over several tasks at once.

The same loop as `FineTuneRecipe`; what differs is set up here: one model per task sharing one
encoder (`MultiTaskModel`), batches of one task each from `TaskSampler`, an evaluation of every
task (logged as `eval_TASK_METRIC`, and their main metrics' mean as `eval_mean`, by which the best
weights are chosen), and the saved folder (the encoder in Hugging Face format plus `heads/`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from torch.utils.data import DataLoader

from smartft import checkpoint
from smartft.data.dataset import BatchSampler, Collator, tokenize
from smartft.data.sources import TrainData, load_train_data
from smartft.distill import check_teachers, teacher_dirs
from smartft.errors import ConfigError
from smartft.evaluation import predict_outputs, score
from smartft.modeling import input_names, load_model
from smartft.multitask import (
    MultiTaskCollator,
    MultiTaskFeatures,
    MultiTaskModel,
    TaskItems,
    TaskSampler,
    parse_tasks,
)
from smartft.output import prepare_output_dir
from smartft.recipe import Batch, FineTuneRecipe
from smartft.runtime import say


class MultiTaskRecipe(FineTuneRecipe):
    """Several tasks, one shared encoder, a head each (MT-DNN's multi-task stage)."""

    def setup_data(self) -> None:
        cfg = self.cfg
        self.names = parse_tasks(cfg.task_name)
        if cfg.ood_tasks:
            raise ConfigError(
                "--ood_tasks is for single-task runs; score a multi-task run's heads on "
                "out-of-distribution sets with smartft eval"
            )
        if cfg.score_dev_at_end:
            raise ConfigError(
                "--score_dev_at_end is for single-task runs; score a multi-task run's heads "
                "with smartft eval"
            )
        self.datas: list[TrainData] = [
            load_train_data(replace(cfg, task_name=name)) for name in self.names
        ]
        self.specs = [data.spec for data in self.datas]
        other = [spec for spec in self.specs if spec.shape != "sentence"]
        if other:
            kind = {"token": "tagging", "choice": "multiple-choice", "span": "span"}
            raise ConfigError(
                f"--task_name {cfg.task_name}: multi-task training takes sentence tasks only; "
                f"train the {kind[other[0].shape]} task {other[0].name} on its own"
            )
        self.data, self.spec = self.datas[0], self.specs[0]
        self.main_metric = "mean"
        self.regression = None  # a head per task: regression is read from each batch
        self.teachers = teacher_dirs(cfg.teachers)
        for spec in self.specs:
            check_teachers(self.teachers, spec)
        self.out = prepare_output_dir(cfg)
        self.resume = checkpoint.resolve_resume(cfg.resume_from_checkpoint, self.out)

    def build(self) -> tuple[Any, DataLoader[Any]]:
        cfg = self.cfg
        models: dict[str, Any] = {}
        for spec in self.specs:
            models[spec.name], self.tokenizer = load_model(
                cfg.model_name_or_path,
                spec,
                cfg.trust_remote_code,
                cfg.fresh_head,
                lambda line: say(self.accelerator, line),
            )
        self.inputs = input_names(models[self.names[0]])
        if cfg.peft:
            raise ConfigError("--peft is for single-task training (not with several tasks yet)")
        pad = self.tokenizer.pad_token_id or 0
        self.collators = [Collator(pad, spec.is_regression) for spec in self.specs]
        self.task_features = [
            tokenize(
                data.train, self.tokenizer, cfg.max_seq_length, spec.is_regression, self.inputs
            )
            for data, spec in zip(self.datas, self.specs, strict=True)
        ]
        for features, spec, collator in zip(
            self.task_features, self.specs, self.collators, strict=True
        ):
            self.attach_soft_targets(features, spec, collator)
        dataset = MultiTaskFeatures(self.task_features)
        samplers = [
            BatchSampler(
                f.lengths,
                cfg.per_device_train_batch_size,
                shuffle=True,
                seed=cfg.seed * 31 + task,
                group_by_length=cfg.group_by_length,
            )
            for task, f in enumerate(self.task_features)
        ]
        self.sampler = TaskSampler(
            samplers,
            dataset.offsets,
            cfg.task_sampling,
            cfg.seed,
            cfg.task_ratio,
            cfg.task_temperature,
        )
        self.collator = MultiTaskCollator(self.collators)  # type: ignore[assignment]
        self.features = dataset  # type: ignore[assignment]
        return MultiTaskModel(models), DataLoader(
            dataset, batch_sampler=self.sampler, collate_fn=self.collator
        )

    def make_eval_loader(self) -> Any:
        """One evaluation loader per task that has an evaluation split."""
        cfg, loaders = self.cfg, {}
        for task, (data, spec) in enumerate(zip(self.datas, self.specs, strict=True)):
            if data.eval is None:
                continue
            features = tokenize(
                data.eval, self.tokenizer, cfg.max_seq_length, spec.is_regression, self.inputs
            )
            loader = DataLoader(
                TaskItems(features, task),
                batch_size=cfg.per_device_eval_batch_size,
                collate_fn=self.collator,
            )
            loaders[spec.name] = self.accelerator.prepare(loader)
        return loaders or None

    def unshuffled_batches(self) -> Iterator[Batch]:
        """Every task's training batches in file order, one task after another."""
        device = self.accelerator.device
        for task, features in enumerate(self.task_features):
            loader = DataLoader(
                TaskItems(features, task),
                batch_size=self.cfg.per_device_train_batch_size,
                collate_fn=self.collator,
            )
            yield from ({k: v.to(device) for k, v in b.items()} for b in loader)

    def announce(self) -> None:
        sizes = ", ".join(
            f"{spec.name} {len(data.train)}"
            for data, spec in zip(self.datas, self.specs, strict=True)
        )
        say(
            self.accelerator,
            f"multi-task ({self.cfg.task_sampling}): {sizes} training examples; "
            f"{self.total_steps} updates; method {self.method.name}",
        )

    def dev_metrics(self) -> dict[str, float]:
        """Every task's metrics (`TASK_METRIC`) and the mean of their main metrics (`mean`)."""
        metrics: dict[str, float] = {}
        mains = []
        by_name = dict(zip(self.names, self.specs, strict=True))
        for name, loader in self.eval_loader.items():
            spec = by_name[name]
            outputs, labels = predict_outputs(
                self.model, loader, self.accelerator, self.show, self.precision
            )
            assert labels is not None
            task_metrics = score(spec, outputs, labels)
            metrics.update({f"{name}_{k}": v for k, v in task_metrics.items()})
            mains.append(task_metrics[spec.main_metric])
        return {"mean": statistics.fmean(mains), **metrics}

    def save_model(self) -> None:
        model: Any = self.unwrapped
        model.save(self.out)

    def results(self, runtime: float) -> dict[str, Any]:
        results = super().results(runtime)
        results.update(
            task=",".join(self.names),
            tasks=self.names,
            task_sampling=self.cfg.task_sampling,
            train_examples=sum(len(d.train) for d in self.datas),
            eval_examples=sum(len(d.eval) for d in self.datas if d.eval is not None),
        )
        return results
