"""The training loop (train / evaluate / predict) on accelerate.

It knows nothing of any one method: each step it runs the clean forward, adds the method's named
loss terms to the task loss, steps, and tells the method that an update happened.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from smartft.config import RunConfig, TrainConfig, write_yaml
from smartft.data.dataset import (
    BatchSampler,
    Collator,
    Examples,
    Features,
    infer_labels,
    load_examples,
    read_split,
    to_examples,
    tokenize,
)
from smartft.data.tasks import TaskSpec, get_task
from smartft.errors import ConfigError
from smartft.losses import task_loss
from smartft.methods import Method, SetupInfo, get_method, model_inputs
from smartft.metrics import compute_metrics, is_better, json_safe
from smartft.modeling import labels_from_model, load_model

# ----------------------------------------------------------------------------- data


def custom_task(cfg: TrainConfig) -> TaskSpec:
    """A task made from --train_file/--validation_file/--test_file; labels inferred later."""
    if not cfg.text_columns:
        raise ConfigError("custom data needs --text_columns (one or two comma-separated names)")
    columns = tuple(c.strip() for c in cfg.text_columns.split(",") if c.strip())
    if not 1 <= len(columns) <= 2:
        raise ConfigError(f"--text_columns: expected one or two names, got {cfg.text_columns!r}")
    files = {
        split: str(Path(f).resolve())
        for split, f in (
            ("train", cfg.train_file),
            ("validation", cfg.validation_file),
            ("test", cfg.test_file),
        )
        if f
    }
    labels: tuple[str, ...] | None = None if cfg.problem_type == "regression" else ()
    return TaskSpec(
        name="custom",
        files=files,
        text_columns=columns,
        label_column=cfg.label_column,
        labels=labels,
        metrics=("accuracy",),
        fmt="",
        id_column=None,
        submission={"test": "predictions.tsv"} if cfg.test_file else {},
    )


def with_metrics(spec: TaskSpec, labels: tuple[str, ...] | None) -> TaskSpec:
    """Custom tasks: fix the label set and pick metrics that suit it."""
    if labels is None:
        return replace(spec, labels=None, metrics=("pearson", "spearman"))
    return replace(
        spec, labels=labels, metrics=("accuracy", "f1") if len(labels) == 2 else ("accuracy",)
    )


def resolve_task(cfg: TrainConfig) -> TaskSpec:
    custom = cfg.train_file or cfg.validation_file or cfg.test_file
    if cfg.task_name and custom:
        raise ConfigError("give either --task_name (with --data_dir) or custom files, not both")
    if cfg.task_name:
        if not cfg.data_dir:
            raise ConfigError(
                f"--task_name {cfg.task_name} needs --data_dir (e.g. ../shared/data/glue)"
            )
        return get_task(cfg.task_name)
    if custom:
        return custom_task(cfg)
    raise ConfigError(
        "no data: give --task_name and --data_dir, or --train_file and "
        "--validation_file with --text_columns"
    )


def data_dir(cfg: TrainConfig) -> Path | None:
    return Path(cfg.data_dir) if cfg.data_dir else None


@dataclass
class TrainData:
    spec: TaskSpec
    train: Examples
    eval: Examples | None


def load_train_data(cfg: TrainConfig) -> TrainData:
    """Read and validate every file the run needs before anything is written."""
    spec = resolve_task(cfg)
    if "train" not in spec.files:
        raise ConfigError(f"task {spec.name} has no training split")
    path, rows = read_split(spec, "train", data_dir(cfg))
    if spec.labels == () or spec.name == "custom":
        spec = with_metrics(
            spec, infer_labels(path, rows, spec.label_column or "label", cfg.problem_type)
        )
    train = to_examples(spec, "train", path, rows, require_labels=True)
    evaluation = None
    if spec.eval_split in spec.files:
        evaluation = load_examples(spec, spec.eval_split, data_dir(cfg))
    return TrainData(
        spec,
        train.sample(cfg.train_fraction, cfg.data_seed).head(cfg.max_train_samples),
        evaluation.head(cfg.max_eval_samples) if evaluation else None,
    )


# ----------------------------------------------------------------------------- running


def make_accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
    )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and accelerator.num_processes != world:
        raise ConfigError(
            f"WORLD_SIZE={world} but only {accelerator.num_processes} process(es) "
            "joined; launch with `torchrun --nproc_per_node N` or "
            "`accelerate launch`"
        )
    return accelerator


def predict_outputs(
    model: Any, loader: DataLoader[Any], accelerator: Any, show: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Logits (or scores) and labels over a loader, gathered across processes without duplicates."""
    was_training = model.training
    model.eval()
    outputs: list[NDArray[np.float64]] = []
    labels: list[NDArray[np.float64]] = []
    with torch.no_grad():
        for batch in tqdm(loader, desc="eval", leave=False, disable=not show):
            logits = model(**model_inputs(batch)).logits.float()
            if "labels" in batch:
                logits, gold = accelerator.gather_for_metrics((logits, batch["labels"]))
                labels.append(gold.cpu().numpy().astype(np.float64))
            else:
                logits = accelerator.gather_for_metrics(logits)
            outputs.append(logits.cpu().numpy().astype(np.float64))
    model.train(was_training)
    return np.concatenate(outputs), (np.concatenate(labels) if labels else None)


def to_predictions(outputs: NDArray[np.float64], regression: bool) -> NDArray[np.float64]:
    return outputs[:, 0] if regression else outputs.argmax(-1).astype(np.float64)


def score(
    spec: TaskSpec, outputs: NDArray[np.float64], labels: NDArray[np.float64]
) -> dict[str, float]:
    return compute_metrics(spec.metrics, to_predictions(outputs, spec.is_regression), labels)


def prepare_output_dir(cfg: TrainConfig) -> Path:
    if not cfg.output_dir:
        raise ConfigError("--output_dir is required")
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output_dir {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not cfg.overwrite_output_dir:
        raise ConfigError(
            f"--output_dir {out} is not empty; pass --overwrite_output_dir or choose another folder"
        )
    return out


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (
            no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay
        ).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_lambda(total: int, warmup_ratio: float, kind: str) -> Any:
    warmup = math.ceil(total * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class EventLog:
    """`metrics.jsonl`: one JSON object per logging or evaluation event (main process only)."""

    def __init__(self, path: Path | None) -> None:
        self.file: TextIO | None = path.open("w", encoding="utf-8") if path else None

    def write(self, event: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(json_safe(event)) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def say(accelerator: Any, message: str) -> None:
    if accelerator.is_main_process:
        tqdm.write(message, file=sys.stderr)


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def train(run: RunConfig) -> dict[str, Any]:
    """Fine-tune, evaluate, save; returns what `all_results.json` holds."""
    cfg = run.train
    accelerator = make_accelerator(cfg)
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    data = load_train_data(cfg)
    spec = data.spec
    out = prepare_output_dir(cfg)
    model, tokenizer = load_model(cfg.model_name_or_path, spec, cfg.trust_remote_code)

    collator = Collator(tokenizer.pad_token_id or 0, spec.is_regression)
    train_features = tokenize(data.train, tokenizer, cfg.max_seq_length, spec.is_regression)
    sampler = BatchSampler(
        train_features.lengths,
        cfg.per_device_train_batch_size,
        shuffle=True,
        seed=cfg.seed,
        group_by_length=cfg.group_by_length,
    )
    train_loader = DataLoader(train_features, batch_sampler=sampler, collate_fn=collator)
    eval_loader = None
    if data.eval is not None:
        eval_features = tokenize(data.eval, tokenizer, cfg.max_seq_length, spec.is_regression)
        eval_loader = DataLoader(
            eval_features, batch_size=cfg.per_device_eval_batch_size, collate_fn=collator
        )

    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
    )
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)
    # accelerate also steps on an epoch's last, partial accumulation window: round up
    updates_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    total_steps = (
        cfg.max_steps
        if cfg.max_steps > 0
        else max(1, math.ceil(cfg.num_train_epochs * updates_per_epoch))
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, cfg.warmup_ratio, cfg.lr_scheduler_type)
    )

    unwrapped = accelerator.unwrap_model(model)
    method: Method = get_method(cfg.method)(run.methods)
    method.setup(
        unwrapped, SetupInfo(total_steps, spec.is_regression, cfg.seed, accelerator.process_index)
    )

    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / "config.yaml", run.flat())
    log = EventLog(out / "metrics.jsonl" if main else None)
    show = main and (not cfg.disable_tqdm if cfg.disable_tqdm is not None else sys.stderr.isatty())
    say(
        accelerator,
        f"{spec.name}: {len(data.train)} training examples, "
        f"{len(data.eval) if data.eval else 0} for evaluation; {total_steps} updates; "
        f"method {method.name}",
    )

    best: dict[str, Any] = {"metric": None, "step": None, "state": None, "metrics": {}}
    evaluated_at: list[int] = []

    def run_eval(step: int, epoch: float) -> dict[str, float]:
        assert eval_loader is not None
        outputs, labels = predict_outputs(model, eval_loader, accelerator, show)
        assert labels is not None
        metrics = score(spec, outputs, labels)
        evaluated_at.append(step)
        log.write(
            {
                "event": "eval",
                "step": step,
                "epoch": round(epoch, 4),
                **{f"eval_{k}": v for k, v in metrics.items()},
            }
        )
        say(accelerator, f"step {step} (epoch {epoch:.2f}): {format_metrics(metrics)}")
        if is_better(metrics[spec.main_metric], best["metric"]):
            best.update(metric=metrics[spec.main_metric], step=step, metrics=metrics)
            if cfg.load_best_model_at_end:
                best["state"] = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
        return metrics

    model.train()
    step, epoch = 0, 0
    window: dict[str, float] = {}  # sums of logged values since the last log line
    window_batches = 0
    step_times: list[float] = []
    progress = tqdm(total=total_steps, desc="train", disable=not show)
    started = step_start = time.perf_counter()
    while step < total_steps:
        sampler.set_epoch(epoch)
        for index, batch in enumerate(train_loader):
            with accelerator.accumulate(model):
                logits = model(**model_inputs(batch)).logits
                loss_task = task_loss(logits, batch["labels"], spec.is_regression)
                terms = method.loss_terms(unwrapped, batch, logits)
                loss = loss_task + sum(terms.values())
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            values = {
                "loss": float(loss.detach()),
                "task_loss": float(loss_task.detach()),
                **{k: float(v.detach()) for k, v in terms.items()},
                **method.log_values(),
            }
            for name, value in values.items():
                window[name] = window.get(name, 0.0) + value
            window_batches += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            method.after_step(unwrapped)
            step += 1
            now = time.perf_counter()
            step_times.append(now - step_start)
            step_start = now
            progress.update(1)
            position = epoch + (index + 1) / len(train_loader)
            if step % cfg.logging_steps == 0 or step == total_steps:
                averages = {k: v / window_batches for k, v in window.items()}
                log.write(
                    {
                        "event": "train",
                        "step": step,
                        "epoch": round(position, 4),
                        "learning_rate": scheduler.get_last_lr()[0],
                        "step_time_s": statistics.median(step_times[-cfg.logging_steps :]),
                        **averages,
                    }
                )
                progress.set_postfix(loss=f"{averages['loss']:.4f}")
                window, window_batches = {}, 0
            if (
                eval_loader is not None
                and cfg.eval_strategy != "no"
                and cfg.eval_steps > 0
                and step % cfg.eval_steps == 0
            ):
                run_eval(step, position)
            if step >= total_steps:
                break
        else:
            if (
                eval_loader is not None
                and cfg.eval_strategy == "epoch"
                and evaluated_at[-1:] != [step]
            ):
                run_eval(step, epoch + 1.0)
        epoch += 1
    progress.close()
    runtime = time.perf_counter() - started
    if eval_loader is not None and cfg.eval_strategy != "no" and evaluated_at[-1:] != [step]:
        run_eval(step, step / updates_per_epoch)  # the last update was not evaluated yet
    log.close()
    if cfg.load_best_model_at_end and best["state"] is not None:
        unwrapped.load_state_dict(best["state"])
    results: dict[str, Any] = {
        "task": spec.name,
        "method": method.name,
        "seed": cfg.seed,
        "model": cfg.model_name_or_path,
        "train_examples": len(data.train),
        "eval_examples": len(data.eval) if data.eval else 0,
        "train_steps": step,
        "train_runtime_s": round(runtime, 2),
        "train_samples_per_second": round(len(data.train) * step / updates_per_epoch / runtime, 3),
        "step_time_median_s": round(statistics.median(step_times), 5),
        "main_metric": spec.main_metric,
        "best_step": best["step"],
        "best_metric": best["metric"],
    }
    results.update(method.counters())
    if eval_loader is not None:
        outputs, labels = predict_outputs(model, eval_loader, accelerator, show)
        assert labels is not None
        results.update({f"eval_{k}": v for k, v in score(spec, outputs, labels).items()})
    accelerator.wait_for_everyone()
    if main:
        unwrapped.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "all_results.json").write_text(
            json.dumps(json_safe(results), indent=2) + "\n", encoding="utf-8"
        )
    results["output_dir"] = str(out)
    return results


# ----------------------------------------------------------------------------- saved models


def load_for_inference(cfg: TrainConfig) -> tuple[TaskSpec, Any, Any, Any]:
    """The task spec, accelerator, model and tokenizer for `eval` / `predict` on a saved model."""
    accelerator = make_accelerator(cfg)
    spec = resolve_task(cfg)
    from transformers import AutoModelForSequenceClassification

    from smartft.modeling import load_tokenizer, quiet_transformers, resolve_model_path

    quiet_transformers()
    path = resolve_model_path(cfg.model_name_or_path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True, trust_remote_code=cfg.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a model from {path}: {err}") from None
    if spec.name == "custom":
        spec = with_metrics(spec, labels_from_model(model))
    elif model.config.num_labels != spec.num_labels:
        raise ConfigError(
            f"the model at {path} has {model.config.num_labels} outputs but task "
            f"{spec.name} needs {spec.num_labels}; was it trained on this task?"
        )
    tokenizer = load_tokenizer(path, cfg.trust_remote_code)
    model = accelerator.prepare(model)
    return spec, accelerator, model, tokenizer


def _loader(
    examples: Examples, tokenizer: Any, spec: TaskSpec, cfg: TrainConfig, accelerator: Any
) -> Any:
    features: Features = tokenize(examples, tokenizer, cfg.max_seq_length, spec.is_regression)
    loader = DataLoader(
        features,
        batch_size=cfg.per_device_eval_batch_size,
        collate_fn=Collator(tokenizer.pad_token_id or 0, spec.is_regression),
    )
    return accelerator.prepare(loader)


def evaluate(cfg: TrainConfig, split: str | None) -> dict[str, Any]:
    """Score a saved model on a labeled split of a task or custom file."""
    spec, accelerator, model, tokenizer = load_for_inference(cfg)
    split = split or spec.eval_split
    examples = load_examples(spec, split, data_dir(cfg)).head(cfg.max_eval_samples)
    loader = _loader(examples, tokenizer, spec, cfg, accelerator)
    outputs, labels = predict_outputs(model, loader, accelerator, sys.stderr.isatty())
    assert labels is not None
    return {
        "task": spec.name,
        "split": split,
        "examples": len(examples),
        **score(spec, outputs, labels),
    }


def predict(cfg: TrainConfig, split: str | None) -> list[Path]:
    """Write GLUE-style submission files (`index<TAB>prediction`) for the test split(s)."""
    spec, accelerator, model, tokenizer = load_for_inference(cfg)
    splits = [split] if split else list(spec.submission)
    if not splits:
        raise ConfigError(f"task {spec.name} has no test split; pass --split or --test_file")
    out = Path(cfg.output_dir or ".")
    written = []
    for name in splits:
        examples = load_examples(spec, name, data_dir(cfg), require_labels=False)
        loader = _loader(examples, tokenizer, spec, cfg, accelerator)
        outputs, _ = predict_outputs(model, loader, accelerator, sys.stderr.isatty())
        predictions = to_predictions(outputs, spec.is_regression)
        if spec.is_regression:
            values = [f"{p:.3f}" for p in predictions]
        else:
            assert spec.labels is not None
            values = [spec.labels[int(p)] for p in predictions]
        target = out / spec.submission.get(name, f"{spec.name}-{name}.tsv")
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            lines = [
                "index\tprediction",
                *(f"{i}\t{v}" for i, v in zip(examples.ids, values, strict=True)),
            ]
            target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(target)
    return written
