"""Saved models at work: `smartft eval` (metrics on a labeled split) and `smartft predict`
(GLUE-style submission files)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader

from smartft.choice import answer_ids
from smartft.config import TrainConfig
from smartft.data.dataset import Collator, Examples, load_examples, tokenize
from smartft.data.sources import data_dir, resolve_task, with_metrics
from smartft.data.tasks import TaskSpec
from smartft.errors import ConfigError
from smartft.evaluation import Layout, predict_outputs, score, to_predictions
from smartft.modeling import (
    check_labels,
    check_shape,
    input_names,
    labels_from_model,
    model_class,
    set_padding,
    task_view,
)
from smartft.multitask import load_head, saved_head, trained_heads
from smartft.precision import Precision
from smartft.runtime import make_accelerator
from smartft.span import SpanLayout, write_predictions
from smartft.tagging import TagLayout, write_conll
from smartft.transfer import Transfer, transfer


@dataclass
class SavedModel:
    """A saved model ready to score a task's examples."""

    spec: TaskSpec
    cfg: TrainConfig
    accelerator: Any
    precision: Precision
    model: Any
    tokenizer: Any
    layout: Layout = None
    # another task's NLI set scored as entailment against the rest (smartft.transfer)
    transfer: Transfer | None = None

    def outputs(self, examples: Examples) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Logits (or scores) and, where the examples have them, labels (a tagging task's: one
        row per labelled token; `self.layout` then places them in their sentences)."""
        spec, cfg = self.spec, self.cfg
        keys = input_names(self.accelerator.unwrap_model(self.model))  # not DDP's wrapper
        features = tokenize(
            examples,
            self.tokenizer,
            cfg.max_seq_length,
            spec.is_regression,
            keys,
            cfg.doc_stride,
            cfg.max_answer_length,
        )
        self.layout = features.layout
        loader = DataLoader(
            features,
            batch_size=cfg.per_device_eval_batch_size,
            collate_fn=Collator(self.tokenizer.pad_token_id or 0, spec.is_regression),
        )
        prepared = self.accelerator.prepare(loader)
        show = sys.stderr.isatty()
        return predict_outputs(self.model, prepared, self.accelerator, show, self.precision)


def load_for_inference(
    cfg: TrainConfig, allow_label_mismatch: bool = False, trained_length: bool = False
) -> SavedModel:
    """The task spec, accelerator, model and tokenizer for `eval` / `predict` on a saved model,
    refusing a model whose labels are not the task's (unless that is what is asked).
    `trained_length`: inputs are cut at the length the model was trained with (its run's
    config.yaml), as `--max_seq_length` not given means."""
    accelerator, precision = make_accelerator(cfg)
    spec = resolve_task(cfg)
    from smartft.modeling import load_tokenizer, quiet_transformers, resolve_model_path

    quiet_transformers()
    path = resolve_model_path(cfg.model_name_or_path, adapters=True)
    if trained_length:
        cfg = replace(cfg, max_seq_length=run_option(path, "max_seq_length", cfg.max_seq_length))
    if cfg.doc_stride is None:  # a span model's windows overlap as in its training
        cfg = replace(cfg, doc_stride=run_option(path, "doc_stride", None))
    adapters = (path / "adapter_config.json").is_file()
    loader = model_class(spec.shape, adapters)
    head = task_head(path, spec.name)
    try:
        model = loader.from_pretrained(
            path,
            dtype=torch.float32,  # --bf16 / --fp16 autocast; the weights stay float32
            local_files_only=True,
            trust_remote_code=cfg.trust_remote_code,
            **(head_size(path) if adapters else {}),
            **({"config": head_config(head, cfg.trust_remote_code)} if head else {}),
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a model from {path}: {err}") from None
    if head is not None:
        load_head(model, head)
    view = None
    check_shape(path if head is None else head.parent, spec)
    if spec.shape == "choice" and not spec.labels:  # your own file: the model's k answers
        spec = replace(spec, labels=answer_ids(int(getattr(model.config, "num_choices", 0))))
    elif spec.shape in ("choice", "span"):  # scores per answer or token: no label set to match
        pass
    elif spec.name == "custom":
        spec = with_metrics(spec, labels_from_model(model))
    elif (view := nli_view(model, spec)) is None:
        check_labels(path, model, spec, allow_label_mismatch)
    tokenizer = load_tokenizer(path, cfg.trust_remote_code, words=spec.tagging)
    set_padding(model, tokenizer)
    task_view(model, spec)
    model = accelerator.prepare(model)
    return SavedModel(spec, cfg, accelerator, precision, model, tokenizer, transfer=view)


def nli_view(model: Any, spec: TaskSpec) -> Transfer | None:
    """A 2-way NLI model (RTE's labels) on a 2- or 3-way NLI set with other labels: scored as
    entailment against the rest. None for every other pairing (checked as before)."""
    ours = labels_from_model(model)
    if ours is None or spec.labels is None or spec.owns_labels(ours):
        return None
    try:
        found = transfer(ours, spec)
    except ConfigError:
        return None
    return found if found.collapse else None


def run_option(path: Path, name: str, default: Any) -> Any:
    """An option of the smartft run that saved the model in `path` (its config.yaml)."""
    import yaml

    saved = path / "config.yaml"
    if not saved.is_file():
        return default
    options = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    return options.get(name, default)


def task_head(path: Path, task: str) -> Path | None:
    """The stored head of `task` when `path` is a multi-task run (whose `model.safetensors` is
    the shared encoder alone: without its head a task would be scored by random weights);
    None for a single-task model. A multi-task run without a head for the task is refused."""
    heads = trained_heads(path)
    if not heads:
        return None
    head = saved_head(path, task)
    if head is None:
        raise ConfigError(
            f"{path} is a multi-task run with heads for {', '.join(heads)} only; it has no head "
            f"for task {task}"
        )
    return head


def head_config(head: Path, trust_remote_code: bool) -> Any:
    """The task model's config saved beside a multi-task head (its labels and head type)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(
        head.parent, local_files_only=True, trust_remote_code=trust_remote_code
    )


def head_size(path: Path) -> dict[str, Any]:
    """A LoRA run's labels (saved beside its adapters), for the base model's new head, which
    the adapters' saved head weights then fill."""
    config = path / "config.json"
    if not config.is_file():  # adapters saved elsewhere: the head keeps the base's default
        return {}
    saved = json.loads(config.read_text(encoding="utf-8"))
    size: dict[str, Any] = {"id2label": {int(k): v for k, v in saved["id2label"].items()}}
    if saved.get("problem_type"):
        size["problem_type"] = saved["problem_type"]
    return size


def evaluate(
    cfg: TrainConfig,
    split: str | None,
    allow_label_mismatch: bool = False,
    trained_length: bool = False,
) -> dict[str, Any]:
    """Score a saved model on a labeled split of a task or custom file. Several models
    (`--model_name_or_path A,B,C`, e.g. the teachers given to `--teachers`) are scored as one
    ensemble, the way distillation averages them: the mean of their probabilities
    (classification, tagging) or of their predictions (regression)."""
    paths = [p.strip() for p in cfg.model_name_or_path.split(",") if p.strip()]
    total: NDArray[np.float64] | None = None
    for path in paths:
        saved = load_for_inference(
            replace(cfg, model_name_or_path=path), allow_label_mismatch, trained_length
        )
        if total is None:
            spec = saved.spec
            split = split or spec.eval_split
            examples = load_examples(spec, split, data_dir(cfg)).head(cfg.max_eval_samples)
        elif saved.spec.labels != spec.labels:
            raise ConfigError(
                f"--model_name_or_path: {path} predicts the labels "
                f"({', '.join(saved.spec.labels or ('a score',))}) but {paths[0]} predicts "
                f"({', '.join(spec.labels or ('a score',))}); an ensemble needs one label set"
            )
        outputs, labels = saved.outputs(examples)
        if saved.transfer is not None and labels is not None:
            labels = saved.transfer.labels(labels)
        if len(paths) > 1 and not spec.is_regression:
            outputs = torch.from_numpy(outputs).softmax(-1).numpy()
        total = outputs if total is None else total + outputs
    assert total is not None and (labels is not None or spec.shape == "span")
    scoring = saved.transfer.scoring if saved.transfer else spec
    return {
        "task": spec.name,
        "split": split,
        "examples": len(examples),
        **({"models": len(paths)} if len(paths) > 1 else {}),
        **({"scored_as": saved.transfer.description} if saved.transfer else {}),
        **score(scoring, total / len(paths), labels, saved.layout),
    }


def predict(
    cfg: TrainConfig,
    split: str | None,
    allow_label_mismatch: bool = False,
    trained_length: bool = False,
) -> list[Path]:
    """Write GLUE-style submission files (`index<TAB>prediction`) for the test split(s)."""
    out = Path(cfg.output_dir or ".")
    if out.exists() and not out.is_dir():  # before predicting the whole split, not after
        raise ConfigError(f"--output_dir {out} exists and is not a folder")
    saved = load_for_inference(cfg, allow_label_mismatch, trained_length)
    spec = saved.spec
    splits = [split] if split else list(spec.submission)
    if not splits:
        raise ConfigError(f"task {spec.name} has no test split; pass --split or --test_file")
    written = []
    for name in splits:
        examples = load_examples(spec, name, data_dir(cfg), require_labels=False)
        outputs, _ = saved.outputs(examples)
        target = out / spec.submission.get(name, f"{spec.name}-{name}.tsv")
        if spec.shape == "span":  # the official evaluator's {question id: answer} JSON
            target = target.with_suffix(".json")
            if saved.accelerator.is_main_process:
                assert isinstance(saved.layout, SpanLayout)
                out.mkdir(parents=True, exist_ok=True)
                write_predictions(target, saved.layout.predictions(outputs))
            written.append(target)
            continue
        if spec.tagging:  # CoNLL: each word and its predicted tag
            target = target.with_suffix(".conll")
            if saved.accelerator.is_main_process:
                assert isinstance(saved.layout, TagLayout) and spec.labels is not None
                out.mkdir(parents=True, exist_ok=True)
                tags = saved.layout.sentences(outputs.argmax(-1), spec.labels)
                write_conll(target, examples.texts, tags)
            written.append(target)
            continue
        predictions = to_predictions(outputs, spec.is_regression)
        if spec.is_regression:
            values = [f"{p:.3f}" for p in predictions]
        elif spec.shape == "choice":  # the answer's number and its text
            values = [
                f"{int(p)}\t{texts[2 + int(p)]}"
                for p, texts in zip(predictions, examples.texts, strict=True)
            ]
        else:
            assert spec.labels is not None
            values = [spec.labels[int(p)] for p in predictions]
        if saved.accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            header = "index\tprediction\tanswer" if spec.shape == "choice" else "index\tprediction"
            lines = [
                header,
                *(f"{i}\t{v}" for i, v in zip(examples.ids, values, strict=True)),
            ]
            target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(target)
    return written
