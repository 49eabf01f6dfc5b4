"""The training loop (train / evaluate / predict) on accelerate.

It knows nothing of any one method: each step it runs the clean forward, adds the method's named
loss terms to the task loss, steps, and tells the method that an update happened.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from smartft import checkpoint
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
from smartft.errors import ConfigError, SmartftError
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


def tune_cpu_allocator() -> bool:
    """Ask glibc's malloc to keep freed memory instead of handing it back to the kernel after
    every step. Each step allocates and frees the same activation-sized blocks; returned blocks
    come back as fresh pages whose first touch faults (the profile of a SMART step showed
    activation-sized element-wise ops 1.7-2.9x slower per call than in a plain step). Peak
    memory is unchanged; resident memory stays at the peak.
    False where this is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's ceiling for this setting
        ok &= libc.mallopt(m_trim_threshold, 1 << 30)
        ok &= libc.mallopt(m_top_pad, 64 << 20)
    except (OSError, AttributeError):
        return False
    return bool(ok)


def make_accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.tune_cpu_allocator and not torch.cuda.is_available():
        tune_cpu_allocator()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = ("RANK", "MASTER_ADDR")
    if world > 1 and not all(os.environ.get(k) for k in launcher):
        raise ConfigError(
            f"WORLD_SIZE={world} but only 1 process was started (no RANK/MASTER_ADDR from a "
            "launcher); launch with `torchrun --nproc_per_node N` or `accelerate launch`, or "
            "unset WORLD_SIZE"
        )
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
    )
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
    resuming = cfg.resume_from_checkpoint is not None
    if out.is_dir() and any(out.iterdir()) and not (cfg.overwrite_output_dir or resuming):
        raise ConfigError(
            f"--output_dir {out} is not empty; pass --overwrite_output_dir, "
            "--resume_from_checkpoint auto, or choose another folder"
        )
    probe_dir = next(p for p in (out, *out.absolute().parents) if p.exists())
    try:  # write access, tested by writing (permission bits say nothing for root)
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".smartft-probe-"):
            pass
    except OSError as err:
        raise ConfigError(f"--output_dir {out}: cannot write there ({err.strerror})") from None
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


def make_optimizer(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel per parameter, no temporaries the size of the embedding table)
    wherever torch has the fused kernel for the parameters' device."""
    device = next(model.parameters()).device.type
    fused = device in ("cpu", "cuda")
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused
    )


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
    """`metrics.jsonl`: one JSON object per logging or evaluation event (main process only).

    When resuming, events after the checkpoint's update are dropped: they are written again.
    """

    def __init__(self, path: Path | None, keep_until: int | None = None) -> None:
        kept: list[str] = []
        if path is not None and keep_until is not None and path.is_file():
            kept = [
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= keep_until
            ]
        self.file: TextIO | None = path.open("w", encoding="utf-8") if path else None
        if self.file is not None and kept:
            self.file.write("\n".join(kept) + "\n")

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


class TrainingError(SmartftError):
    """Training cannot go on (e.g. too many non-finite updates in a row)."""

    exit_code = 3


@dataclass
class StepOutput:
    loss: torch.Tensor
    task_loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    grad_norm: float  # NaN on accumulation micro-steps, which clip nothing
    finite: bool


def train_step(
    model: torch.nn.Module,
    unwrapped: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    method: Method,
    accelerator: Any,
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float,
    regression: bool,
) -> StepOutput:
    """One micro-batch: clean forward, the method's terms, one backward, and when the accumulation
    window closes, clipping and the update (skipped if the loss or gradient norm is not finite).
    Shared by `train` and `smartft bench`, so the benchmark times exactly this code."""
    with accelerator.accumulate(model):
        method.before_forward(unwrapped, batch, accelerator.backward)
        logits = model(**model_inputs(batch)).logits
        loss_task = task_loss(logits, batch["labels"], regression)
        terms = method.loss_terms(unwrapped, batch, logits)
        loss = method.task_loss_weight() * loss_task + sum(terms.values())
        accelerator.backward(loss)
        grad_norm, finite = math.nan, True
        if accelerator.sync_gradients:
            method.before_update(unwrapped)
            limit = max_grad_norm if max_grad_norm > 0 else math.inf
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), limit))
            finite = math.isfinite(grad_norm) and math.isfinite(float(loss.detach()))
            if finite:
                optimizer.step()
        optimizer.zero_grad()
    return StepOutput(loss, loss_task, terms, grad_norm, finite)


def train(run: RunConfig) -> dict[str, Any]:
    """Fine-tune, evaluate, save; returns what `all_results.json` holds."""
    cfg = run.train
    accelerator = make_accelerator(cfg)
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    data = load_train_data(cfg)
    spec = data.spec
    out = prepare_output_dir(cfg)
    resume = checkpoint.resolve_resume(cfg.resume_from_checkpoint, out)
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

    betas = (cfg.adam_beta1, cfg.adam_beta2)
    optimizer = make_optimizer(model, cfg.learning_rate, cfg.weight_decay, betas, cfg.adam_epsilon)
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

    def train_batches() -> Iterator[dict[str, torch.Tensor]]:
        loader = DataLoader(
            train_features, batch_size=cfg.per_device_train_batch_size, collate_fn=collator
        )
        device = accelerator.device
        return ({k: v.to(device) for k, v in b.items()} for b in loader)

    info = SetupInfo(
        total_steps,
        spec.is_regression,
        cfg.seed,
        accelerator.process_index,
        train_batches,
        accelerator.num_processes,
    )
    method.setup(unwrapped, info)

    main = accelerator.is_main_process
    loop = checkpoint.LoopState()
    best_state: dict[str, torch.Tensor] | None = None
    rng: dict[str, Any] | None = None
    if main:
        for path in checkpoint.remove_leftovers(out):
            say(accelerator, f"removed the leftover of an interrupted checkpoint write: {path}")
        if resume is None:  # a fresh run: an older run's checkpoints must not be resumed later
            for path in checkpoint.complete_checkpoints(out):
                shutil.rmtree(path)
    accelerator.wait_for_everyone()
    if resume is not None:
        loop, best_state, rng = checkpoint.load(
            resume, unwrapped, optimizer, scheduler, method, accelerator.process_index
        )
        if best_state is None and loop.best_step == loop.step and cfg.load_best_model_at_end:
            best_state = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
        say(accelerator, f"resuming from {resume} at update {loop.step}")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / "config.yaml", run.flat())
    log = EventLog(
        out / "metrics.jsonl" if main else None, keep_until=loop.step if resume else None
    )
    show = main and (not cfg.disable_tqdm if cfg.disable_tqdm is not None else sys.stderr.isatty())
    say(
        accelerator,
        f"{spec.name}: {len(data.train)} training examples, "
        f"{len(data.eval) if data.eval else 0} for evaluation; {total_steps} updates; "
        f"method {method.name}",
    )

    def run_eval(position: float) -> None:
        nonlocal best_state
        assert eval_loader is not None
        outputs, labels = predict_outputs(model, eval_loader, accelerator, show)
        assert labels is not None
        metrics = score(spec, outputs, labels)
        loop.evaluated_at.append(loop.step)
        log.write(
            {
                "event": "eval",
                "step": loop.step,
                "epoch": round(position, 4),
                **{f"eval_{k}": v for k, v in metrics.items()},
            }
        )
        say(accelerator, f"step {loop.step} (epoch {position:.2f}): {format_metrics(metrics)}")
        if is_better(metrics[spec.main_metric], loop.best_metric):
            loop.best_metric, loop.best_step = metrics[spec.main_metric], loop.step
            if cfg.load_best_model_at_end:
                best_state = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}

    def save_checkpoint() -> Path:
        path = checkpoint.save(
            out,
            loop,
            unwrapped,
            optimizer,
            scheduler,
            method,
            best_state,
            accelerator,
            cfg.save_total_limit,
        )
        say(accelerator, f"checkpoint saved: {path}")
        return path

    def evaluating(every_epoch: bool) -> bool:
        return (
            eval_loader is not None
            and cfg.eval_strategy != "no"
            and (every_epoch or (cfg.eval_steps > 0 and loop.step % cfg.eval_steps == 0))
            and loop.evaluated_at[-1:] != [loop.step]
        )

    model.train()
    step_times: list[float] = []
    progress = tqdm(total=total_steps, initial=loop.step, desc="train", disable=not show)
    started = step_start = time.perf_counter()
    while loop.step < total_steps:
        # accelerate sets the sampler's epoch from its own pass counter at every pass (so that
        # counter must hold our epoch), but its multi-process shard does not pass it on: set both
        train_loader.set_epoch(loop.epoch)
        sampler.set_epoch(loop.epoch)
        sampler.skip = loop.batch
        batches = iter(train_loader)
        first = next(batches, None)  # creating the iterator draws from the global RNG ...
        if rng is not None:  # ... so a resumed run restores its RNG only after that
            checkpoint.restore_rng(rng)
            rng = None
        stream = batches if first is None else itertools.chain([first], batches)
        for index, batch in enumerate(stream, start=loop.batch):
            loop.batch = index + 1
            out_step = train_step(
                model,
                unwrapped,
                batch,
                method,
                accelerator,
                optimizer,
                cfg.max_grad_norm,
                spec.is_regression,
            )
            finite, grad_norm = out_step.finite, out_step.grad_norm
            values = {
                "loss": float(out_step.loss.detach()),
                "task_loss": float(out_step.task_loss.detach()),
                **{k: float(v.detach()) for k, v in out_step.terms.items()},
                **method.log_values(),
            }
            for name, value in values.items():
                loop.window[name] = loop.window.get(name, 0.0) + value
            loop.window_batches += 1
            if not accelerator.sync_gradients:
                continue
            loop.step += 1
            scheduler.step()
            if finite:
                method.after_step(unwrapped)
                loop.consecutive_skips = 0
                loop.last_finite_loss, loop.last_finite_step = values["loss"], loop.step
            else:
                skip_update(cfg, loop, log, accelerator, values["loss"], grad_norm, save_checkpoint)
            now = time.perf_counter()
            step_times.append(now - step_start)
            step_start = now
            progress.update(1)
            position = loop.epoch + (index + 1) / len(train_loader)
            if loop.step % cfg.logging_steps == 0 or loop.step == total_steps:
                averages = mean_over_processes(
                    accelerator, {k: v / loop.window_batches for k, v in loop.window.items()}
                )
                log.write(
                    {
                        "event": "train",
                        "step": loop.step,
                        "epoch": round(position, 4),
                        "learning_rate": scheduler.get_last_lr()[0],
                        "step_time_s": statistics.median(step_times[-cfg.logging_steps :]),
                        **averages,
                    }
                )
                progress.set_postfix(loss=f"{averages['loss']:.4f}")
                loop.window, loop.window_batches = {}, 0
            if evaluating(every_epoch=False):
                run_eval(position)
            if cfg.save_strategy == "steps" and loop.step % cfg.save_steps == 0:
                save_checkpoint()
            checkpoint.fault_point("update", loop.step)
            if loop.step >= total_steps:
                break
        else:  # the epoch ran to its end
            loop.epoch, loop.batch = loop.epoch + 1, 0
            if evaluating(every_epoch=cfg.eval_strategy == "epoch"):
                run_eval(float(loop.epoch))
            if cfg.save_strategy == "epoch" and loop.step < total_steps:
                save_checkpoint()
    progress.close()
    runtime = time.perf_counter() - started
    if (
        eval_loader is not None
        and cfg.eval_strategy != "no"
        and loop.evaluated_at[-1:] != [loop.step]
    ):
        run_eval(loop.step / updates_per_epoch)  # the last update was not evaluated yet
    log.close()
    if cfg.load_best_model_at_end and best_state is not None:
        unwrapped.load_state_dict(best_state)
    results: dict[str, Any] = {
        "task": spec.name,
        "method": method.name,
        "seed": cfg.seed,
        "model": cfg.model_name_or_path,
        "train_examples": len(data.train),
        "eval_examples": len(data.eval) if data.eval else 0,
        "train_steps": loop.step,
        "train_runtime_s": round(runtime, 2),
        "train_samples_per_second": round(
            len(data.train) * len(step_times) / updates_per_epoch / max(runtime, 1e-9), 3
        ),
        "step_time_median_s": round(statistics.median(step_times), 5) if step_times else None,
        "main_metric": spec.main_metric,
        "best_step": loop.best_step,
        "best_metric": loop.best_metric,
        "skipped_updates": loop.skipped_updates,
        "resumed_from": str(resume) if resume else None,
    }
    results.update(method.counters())
    if accelerator.num_processes > 1:  # every process must hold the same model and teacher
        results["replica_checksums"] = replica_checksums(accelerator, unwrapped, method)
    if eval_loader is not None:
        outputs, labels = predict_outputs(model, eval_loader, accelerator, show)
        assert labels is not None
        results.update({f"eval_{k}": v for k, v in score(spec, outputs, labels).items()})
    accelerator.wait_for_everyone()
    if main:
        if cfg.save_model:
            unwrapped.save_pretrained(out)
            tokenizer.save_pretrained(out)
        (out / "all_results.json").write_text(
            json.dumps(json_safe(results), indent=2) + "\n", encoding="utf-8"
        )
    results["output_dir"] = str(out)
    return results


def mean_over_processes(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    """Logged values averaged over processes (every process calls this at the same step)."""
    if accelerator.num_processes == 1:
        return values
    keys = sorted(values)
    local = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    return dict(zip(keys, accelerator.reduce(local, reduction="mean").tolist(), strict=True))


def checksum(tensors: list[torch.Tensor]) -> int:
    """A 63-bit digest of the tensors' exact bytes (equal iff bitwise equal, in practice)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def replica_checksums(accelerator: Any, model: torch.nn.Module, method: Method) -> list[list[int]]:
    """[model, method state] checksums of every process, gathered."""
    local = torch.tensor(
        [[checksum(list(model.state_dict().values())), checksum(method.state_tensors())]],
        dtype=torch.int64,
        device=accelerator.device,
    )
    return [[int(v) for v in row] for row in accelerator.gather(local).tolist()]


def skip_update(
    cfg: TrainConfig,
    loop: checkpoint.LoopState,
    log: EventLog,
    accelerator: Any,
    loss: float,
    grad_norm: float,
    save_checkpoint: Any,
) -> None:
    """Count a skipped (non-finite) update; after too many in a row, checkpoint and stop."""
    loop.skipped_updates += 1
    loop.consecutive_skips += 1
    log.write({"event": "skip", "step": loop.step, "loss": loss, "grad_norm": grad_norm})
    say(accelerator, f"update {loop.step} skipped: loss {loss}, gradient norm {grad_norm}")
    if loop.consecutive_skips < cfg.max_consecutive_skips:
        return
    saved = save_checkpoint() if cfg.output_dir else None
    last = (
        f"the last finite loss was {loop.last_finite_loss:.6g} at update {loop.last_finite_step}"
        if loop.last_finite_loss is not None
        else "no update had a finite loss"
    )
    raise TrainingError(
        f"stopped at update {loop.step}: {loop.consecutive_skips} updates in a row had a "
        f"non-finite loss or gradient norm; {last}. Checkpoint: {saved}. Try a lower "
        "--learning_rate, or check the data and the method's settings"
    )


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
