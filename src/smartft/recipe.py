"""The fine-tuning recipe: `smartft train` as a short class over the library.

Set-up (data, model and optimizer, method, resume state), the loop, evaluation, checkpoints and the
end of the run are each one named method; `train` is the loop and reads top to bottom. The recipe
knows no method: each step runs the clean forward, adds the method's named loss terms to the task
loss, steps, and tells the method that an update happened (`smartft.step.train_step`).
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from smartft import checkpoint
from smartft.config import RunConfig, write_yaml
from smartft.data.dataset import BatchSampler, Collator, Examples, Features, tokenize
from smartft.data.sources import load_train_data
from smartft.data.tasks import TaskSpec
from smartft.distill import cached_targets, check_teachers, soft_targets, teacher_dirs
from smartft.errors import ConfigError, TrainingError
from smartft.evaluation import Layout, predict_outputs, score
from smartft.events import EventLog, format_metrics
from smartft.methods import Method, SetupInfo, get_method
from smartft.metrics import is_better, json_safe
from smartft.modeling import input_names, load_model, task_view, with_lora
from smartft.optim import make_optimizer, make_scheduler
from smartft.output import (
    ordinary_permissions,
    prepare_output_dir,
    tracker_config,
    write_model_card,
)
from smartft.precision import recorded_warnings
from smartft.provenance import provenance
from smartft.runtime import make_accelerator, mean_over_processes, replica_checksums, say
from smartft.step import StepOutput, train_step

Batch = dict[str, torch.Tensor]


class FineTuneRecipe:
    """One training run of `smartft train`: build it from a RunConfig, then call `train()`."""

    def __init__(self, run: RunConfig) -> None:
        from accelerate.utils import set_seed

        self.run, self.cfg = run, run.train
        with recorded_warnings() as self.warnings:  # told on screen and kept in the records
            self.accelerator, self.precision = make_accelerator(self.cfg, trackers=True)
            self.main = self.accelerator.is_main_process
            set_seed(self.cfg.seed)
            self.setup_data()
            self.setup_model()
            self.setup_method()
        self.setup_state()

    # ------------------------------------------------------------------------- set-up

    def setup_data(self) -> None:
        """Read and check every input before anything is written."""
        self.data = load_train_data(self.cfg)
        self.spec = self.data.spec
        if self.spec.shape != "sentence":
            refuse_for_shape(self.run, self.spec.shape)
        self.main_metric = self.spec.main_metric
        self.regression: bool | None = self.spec.is_regression
        self.teachers = teacher_dirs(self.cfg.teachers)
        check_teachers(self.teachers, self.spec)
        self.out = prepare_output_dir(self.cfg)
        self.resume = checkpoint.resolve_resume(self.cfg.resume_from_checkpoint, self.out)

    def setup_model(self) -> None:
        """Model and tokenizer, batches, optimizer and schedule, all prepared by accelerate."""
        model, loader = self.build()
        self.prepare(model, loader)

    def build(self) -> tuple[Any, DataLoader[Any]]:
        """The model, its tokenizer and the training batches (with soft targets if distilling)."""
        cfg, spec = self.cfg, self.spec
        model, self.tokenizer = load_model(
            cfg.model_name_or_path,
            spec,
            cfg.trust_remote_code,
            cfg.fresh_head,
            lambda line: say(self.accelerator, line),
        )
        self.inputs = input_names(model)
        if cfg.peft == "lora":
            model = with_lora(model, cfg, spec.shape)
        task_view(model, spec)  # on the model the loop calls, around peft's wrapper if any
        self.collator = Collator(self.tokenizer.pad_token_id or 0, spec.is_regression)
        self.features = self.tokenized(self.data.train)
        self.attach_soft_targets(self.features, spec, self.collator)
        self.sampler: Any = BatchSampler(
            self.features.lengths,
            cfg.per_device_train_batch_size,
            shuffle=True,
            seed=cfg.seed,
            group_by_length=cfg.group_by_length,
        )
        loader = DataLoader(self.features, batch_sampler=self.sampler, collate_fn=self.collator)
        return model, loader

    def attach_soft_targets(self, features: Features, spec: TaskSpec, collator: Collator) -> None:
        """--teachers: the ensemble's predictions on the training set, computed once, cached."""
        if not self.teachers:
            return
        cfg = self.cfg

        def compute() -> list[list[float]]:
            device = self.accelerator.device
            return soft_targets(
                self.teachers, features, collator, spec, cfg.kd_temperature, device, self.precision
            )

        cache = self.out / "distill" / f"{spec.name}.safetensors"
        features.soft = cached_targets(
            cache, self.teachers, cfg.kd_temperature, len(features), compute
        )

    def prepare(self, model: Any, loader: DataLoader[Any]) -> None:
        cfg = self.cfg
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        optimizer = make_optimizer(
            model, cfg.learning_rate, cfg.weight_decay, betas, cfg.adam_epsilon
        )
        self.model, self.optimizer, self.train_loader = self.accelerator.prepare(
            model, optimizer, loader
        )
        self.eval_loader = self.make_eval_loader()
        # accelerate also steps on an epoch's last, partial accumulation window: round up
        self.updates_per_epoch = math.ceil(len(self.train_loader) / cfg.gradient_accumulation_steps)
        epochs_total = math.ceil(cfg.num_train_epochs * self.updates_per_epoch)
        self.total_steps = cfg.max_steps if cfg.max_steps > 0 else max(1, epochs_total)
        self.scheduler = make_scheduler(
            self.optimizer, self.total_steps, cfg.warmup_ratio, cfg.lr_scheduler_type
        )
        self.unwrapped: torch.nn.Module = self.accelerator.unwrap_model(self.model)

    def make_eval_loader(self) -> Any:
        if self.data.eval is None:
            return None
        loader, self.eval_layout = self.loader_for(self.data.eval)
        return loader

    def tokenized(self, examples: Examples) -> Features:
        cfg = self.cfg
        return tokenize(
            examples,
            self.tokenizer,
            cfg.max_seq_length,
            self.spec.is_regression,
            self.inputs,
            cfg.doc_stride,
            cfg.max_answer_length,
        )

    def loader_for(self, examples: Examples) -> tuple[Any, Layout]:
        """Evaluation batches of `examples`, prepared by accelerate (and, for a tagging or span
        task, where each output belongs: its sentence, its question)."""
        cfg = self.cfg
        features = self.tokenized(examples)
        loader = DataLoader(
            features, batch_size=cfg.per_device_eval_batch_size, collate_fn=self.collator
        )
        return self.accelerator.prepare(loader), features.layout

    def setup_method(self) -> None:
        self.method: Method[Any] = get_method(self.cfg.method)(self.run.methods)
        info = SetupInfo(
            self.total_steps,
            self.regression,
            self.cfg.seed,
            self.accelerator.process_index,
            self.unshuffled_batches,
            self.accelerator.num_processes,
            self.precision,
            self.cfg.kl_gradient,
        )
        with self.precision.autocast():
            self.method.setup(self.unwrapped, info)

    def unshuffled_batches(self) -> Iterator[Batch]:
        """A fresh pass over the training set in file order, on the model's device."""
        loader = DataLoader(
            self.features, batch_size=self.cfg.per_device_train_batch_size, collate_fn=self.collator
        )
        device = self.accelerator.device
        return ({k: v.to(device) for k, v in b.items()} for b in loader)

    def setup_state(self) -> None:
        """Loop position, best weights and the event log: fresh, or restored from a checkpoint."""
        self.loop = checkpoint.LoopState(elapsed_s=0.0)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.rng: dict[str, Any] | None = None
        if self.main:
            for path in checkpoint.remove_leftovers(self.out):
                say(self.accelerator, f"removed the leftover of an interrupted checkpoint: {path}")
            if self.resume is None:  # a fresh run: an older run's checkpoints must not resume
                for path in checkpoint.complete_checkpoints(self.out):
                    shutil.rmtree(path)
        self.accelerator.wait_for_everyone()
        if self.resume is not None:
            self.restore(self.resume)
        # the training time of the parts before a resume: 0.0 if fresh, None if not recorded
        self.before: float | None = self.loop.elapsed_s
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_yaml(self.out / "config.yaml", self.run.flat())
        self.log = EventLog(
            self.out / "metrics.jsonl" if self.main else None,
            keep_until=self.loop.step if self.resume else None,
            keep=self.loop.log_lines if self.resume else None,
        )
        for message in self.warnings:
            say(self.accelerator, f"warning: {message}")
            if self.resume is None:  # a resumed log keeps the warnings it holds
                self.log.write({"event": "warning", "step": 0, "message": message})
        self.accelerator.init_trackers(self.out.name or "smartft", config=tracker_config(self.run))
        tty = sys.stderr.isatty() if self.cfg.disable_tqdm is None else not self.cfg.disable_tqdm
        self.show = self.main and tty
        self.step_times: list[float] = []

    def restore(self, folder: Path) -> None:
        """Continue from `folder`; under `--resume_from_checkpoint auto` a damaged newest
        checkpoint is named and the previous intact one used instead."""
        earlier = [p for p in checkpoint.complete_checkpoints(self.out) if p != folder]
        candidates = [folder, *(earlier[::-1] if self.cfg.resume_from_checkpoint == "auto" else [])]
        for tried, candidate in enumerate(candidates, start=1):
            try:
                self.loop, self.best_state, self.rng = checkpoint.load(
                    candidate,
                    self.unwrapped,
                    self.optimizer,
                    self.scheduler,
                    self.method,
                    self.accelerator.process_index,
                    self.precision.scaler,
                )
                break
            except checkpoint.CheckpointError as err:
                if tried == len(candidates):
                    raise
                say(self.accelerator, f"warning: {err}; trying the previous checkpoint")
        folder = self.resume = candidate
        best_is_current = self.loop.best_step == self.loop.step
        if self.best_state is None and best_is_current and self.cfg.load_best_model_at_end:
            self.best_state = self.current_weights()
        say(self.accelerator, f"resuming from {folder} at update {self.loop.step}")

    # ------------------------------------------------------------------------- the loop

    def train(self) -> dict[str, Any]:
        """Fine-tune, evaluate, save; returns what `all_results.json` holds."""
        loop, cfg = self.loop, self.cfg
        self.announce()
        self.model.train()
        progress = tqdm(
            total=self.total_steps, initial=loop.step, desc="train", disable=not self.show
        )
        self.started = self.step_start = time.perf_counter()
        while loop.step < self.total_steps and not self.patience_spent():
            for index, batch in self.epoch_batches():
                loop.batch = index + 1
                out = train_step(
                    self.model,
                    self.unwrapped,
                    batch,
                    self.method,
                    self.accelerator,
                    self.optimizer,
                    cfg.max_grad_norm,
                    self.regression,
                    self.precision,
                    (cfg.kd_alpha, cfg.kd_temperature) if self.teachers else None,
                )
                loss = self.accumulate(out)
                if not self.accelerator.sync_gradients:
                    continue
                self.complete_update(out, loss)
                progress.update(1)
                position = loop.epoch + (index + 1) / len(self.train_loader)
                self.log_train(position, progress)
                if self.due_evaluation(every_epoch=False):
                    self.evaluate(position)
                if cfg.save_strategy == "steps" and loop.step % cfg.save_steps == 0:
                    self.save_checkpoint()
                checkpoint.fault_point("update", loop.step)
                if loop.step >= self.total_steps or self.patience_spent():
                    break
            else:  # the epoch ran to its end
                self.end_epoch()
        progress.close()
        return self.finish(time.perf_counter() - self.started)

    def announce(self) -> None:
        train, evaluation = len(self.data.train), len(self.data.eval) if self.data.eval else 0
        say(
            self.accelerator,
            f"{self.spec.name}: {train} training examples, {evaluation} for evaluation; "
            f"{self.total_steps} updates; method {self.method.name}; "
            f"{torch.get_num_threads()} CPU thread(s) per process",
        )

    def epoch_batches(self) -> Iterator[tuple[int, Batch]]:
        """The current epoch's batches from where the loop stands (mid-epoch after a resume)."""
        # accelerate sets the sampler's epoch from its own pass counter at every pass (so that
        # counter must hold our epoch), but its multi-process shard does not pass it on: set both
        self.train_loader.set_epoch(self.loop.epoch)
        self.sampler.set_epoch(self.loop.epoch)
        self.sampler.skip = self.loop.batch
        # Creating the iterator draws from the global RNG. A checkpoint taken within an epoch holds
        # the RNG after that draw, so a run resumed from it restores its RNG after creating the
        # iterator; one taken at an epoch's end holds the RNG before the next epoch's draw, so
        # it is restored before, and the iterator draws as the uninterrupted run's did.
        if self.rng is not None and self.loop.batch == 0:
            checkpoint.restore_rng(self.rng)
            self.rng = None
        batches = iter(self.train_loader)
        first = next(batches, None)
        if self.rng is not None:
            checkpoint.restore_rng(self.rng)
            self.rng = None
        stream = batches if first is None else itertools.chain([first], batches)
        return enumerate(stream, start=self.loop.batch)

    def accumulate(self, out: StepOutput) -> float:
        """Add this micro-batch's losses and the method's diagnostics to the logging window."""
        values = {
            "loss": float(out.loss.detach()),
            "task_loss": float(out.task_loss.detach()),
            **{k: float(v.detach()) for k, v in out.terms.items()},
            **self.method.log_values(),
        }
        for name, value in values.items():
            self.loop.window[name] = self.loop.window.get(name, 0.0) + value
        self.loop.window_batches += 1
        return values["loss"]

    def complete_update(self, out: StepOutput, loss: float) -> None:
        """Count the update, step the schedule, tell the method (or count a skipped update)."""
        loop = self.loop
        loop.step += 1
        self.scheduler.step()
        if out.finite:
            self.method.after_step(self.unwrapped)
            loop.consecutive_skips = 0
            loop.last_finite_loss, loop.last_finite_step = loss, loop.step
        elif out.overflow:  # fp16's scaler lowered its scale; no update happened
            loop.overflow_skips += 1
        else:
            self.skip_update(loss, out.grad_norm)
        now = time.perf_counter()
        self.step_times.append(now - self.step_start)
        self.step_start = now

    def log_train(self, position: float, progress: Any) -> None:
        """Every --logging_steps updates (and at the last): the window's averages."""
        loop, cfg = self.loop, self.cfg
        if loop.step % cfg.logging_steps != 0 and loop.step != self.total_steps:
            return
        averages = mean_over_processes(
            self.accelerator, {k: v / loop.window_batches for k, v in loop.window.items()}
        )
        self.log.write(
            {
                "event": "train",
                "step": loop.step,
                "epoch": round(position, 4),
                "learning_rate": self.scheduler.get_last_lr()[0],
                "step_time_s": statistics.median(self.step_times[-cfg.logging_steps :]),
                **averages,
            }
        )
        progress.set_postfix(loss=f"{averages['loss']:.4f}")
        lr = self.scheduler.get_last_lr()[0]
        self.accelerator.log(
            {"train/learning_rate": lr, **{f"train/{k}": v for k, v in averages.items()}},
            step=loop.step,
        )
        loop.window, loop.window_batches = {}, 0

    def end_epoch(self) -> None:
        self.loop.epoch, self.loop.batch = self.loop.epoch + 1, 0
        if self.due_evaluation(every_epoch=self.cfg.eval_strategy == "epoch"):
            self.evaluate(float(self.loop.epoch))
        if self.cfg.save_strategy == "epoch" and self.loop.step < self.total_steps:
            self.save_checkpoint()

    def skip_update(self, loss: float, grad_norm: float) -> None:
        """Count a skipped (non-finite) update; after too many in a row, checkpoint and stop."""
        loop = self.loop
        loop.skipped_updates += 1
        loop.consecutive_skips += 1
        self.log.write({"event": "skip", "step": loop.step, "loss": loss, "grad_norm": grad_norm})
        say(self.accelerator, f"update {loop.step} skipped: loss {loss}, gradient norm {grad_norm}")
        if loop.consecutive_skips < self.cfg.max_consecutive_skips:
            return
        saved = self.save_checkpoint()
        last = (
            f"the last finite loss was {loop.last_finite_loss:.6g} at update "
            f"{loop.last_finite_step}"
            if loop.last_finite_loss is not None
            else "no update had a finite loss"
        )
        raise TrainingError(
            f"stopped at update {loop.step}: {loop.consecutive_skips} updates in a row had a "
            f"non-finite loss or gradient norm; {last}. Checkpoint: {saved}. Try a lower "
            "--learning_rate, or check the data and the method's settings"
        )

    # ------------------------------------------------------------------------- evaluation

    def due_evaluation(self, every_epoch: bool) -> bool:
        cfg, step = self.cfg, self.loop.step
        return (
            self.eval_loader is not None
            and cfg.eval_strategy != "no"
            and (every_epoch or (cfg.eval_steps > 0 and step % cfg.eval_steps == 0))
            and self.loop.evaluated_at[-1:] != [step]
        )

    def evaluate(self, position: float) -> None:
        """Score the dev split, log it, and keep the weights if they are the best so far."""
        metrics = self.dev_metrics()
        loop, main_metric = self.loop, self.main_metric
        loop.evaluated_at.append(loop.step)
        self.log.write(
            {
                "event": "eval",
                "step": loop.step,
                "epoch": round(position, 4),
                **{f"eval_{k}": v for k, v in metrics.items()},
            }
        )
        say(self.accelerator, f"step {loop.step} (epoch {position:.2f}): {format_metrics(metrics)}")
        checkpoint.fault_point("eval", loop.step)
        self.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=loop.step)
        value, threshold = metrics[main_metric], self.cfg.early_stopping_threshold
        if loop.best_metric is None or (
            is_better(value, loop.best_metric) and abs(value - loop.best_metric) > threshold
        ):
            loop.improved_at = loop.step
        if is_better(value, loop.best_metric):
            loop.best_metric, loop.best_step = value, loop.step
            if self.cfg.load_best_model_at_end:
                self.best_state = self.current_weights()
        if self.patience_spent():
            self.log.write({"event": "early_stop", "step": loop.step, "best_step": loop.best_step})
            say(
                self.accelerator,
                f"early stop at update {loop.step}: no improvement since {loop.improved_at}",
            )

    def patience_spent(self) -> bool:
        """--early_stopping_patience evaluations in a row brought no improvement."""
        patience, loop = self.cfg.early_stopping_patience, self.loop
        if patience is None or loop.improved_at is None:
            return False
        return sum(step > loop.improved_at for step in loop.evaluated_at) >= patience

    def dev_metrics(self) -> dict[str, float]:
        return self.scores(self.eval_loader, self.eval_layout)

    def test_metrics(self, examples: Examples) -> dict[str, float]:
        """The final model's scores on other labelled examples (--do_predict's test split,
        --score_dev_at_end's dev split)."""
        return self.scores(*self.loader_for(examples))

    def ood_metrics(self) -> dict[str, float]:
        """--ood_tasks: the final model on each out-of-distribution set (ood_TASK_METRIC)."""
        found: dict[str, float] = {}
        for how, examples in self.data.ood:
            loader, _ = self.loader_for(examples)
            outputs, labels = predict_outputs(
                self.model, loader, self.accelerator, self.show, self.precision
            )
            assert labels is not None
            metrics = score(how.scoring, outputs, how.labels(labels))
            found.update({f"ood_{how.spec.name}_{k}": v for k, v in metrics.items()})
        return found

    def scores(self, loader: Any, layout: Layout) -> dict[str, float]:
        outputs, labels = predict_outputs(
            self.model, loader, self.accelerator, self.show, self.precision
        )
        return score(self.spec, outputs, labels, layout)

    def current_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.unwrapped.state_dict().items()}

    # ------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path:
        self.loop.log_lines = self.log.lines
        if self.before is not None:
            self.loop.elapsed_s = self.before + time.perf_counter() - self.started
        path = checkpoint.save(
            self.out,
            self.loop,
            self.unwrapped,
            self.optimizer,
            self.scheduler,
            self.method,
            self.best_state,
            self.accelerator,
            self.cfg.save_total_limit,
            self.precision.scaler,
        )
        say(self.accelerator, f"checkpoint saved: {path}")
        return path

    # ------------------------------------------------------------------------- the end

    def finish(self, runtime: float) -> dict[str, Any]:
        """Evaluate the last update if needed, restore the best weights, save, report."""
        if self.due_evaluation(every_epoch=True):
            self.evaluate(self.loop.step / self.updates_per_epoch)
        self.log.close()
        for tracker in self.accelerator.trackers:  # (end_training would also end the processes)
            tracker.finish()
        if self.cfg.load_best_model_at_end and self.best_state is not None:
            self.unwrapped.load_state_dict(self.best_state)
        results = self.results(runtime)
        if self.eval_loader is not None:
            results.update({f"eval_{k}": v for k, v in self.dev_metrics().items()})
        if self.data.test is not None:
            results.update({f"test_{k}": v for k, v in self.test_metrics(self.data.test).items()})
        if self.data.dev is not None:  # --score_dev_at_end: dev's one reading
            results.update({f"dev_{k}": v for k, v in self.test_metrics(self.data.dev).items()})
        results.update(self.ood_metrics())
        self.accelerator.wait_for_everyone()
        if self.main:
            if self.cfg.save_model:
                self.save_model()
                self.tokenizer.save_pretrained(self.out)
                write_model_card(self.out, self.run, results)
            (self.out / "all_results.json").write_text(
                json.dumps(json_safe(results), indent=2) + "\n", encoding="utf-8"
            )
            ordinary_permissions(self.out)
        results["output_dir"] = str(self.out)
        return results

    def save_model(self) -> None:
        """The model, or a LoRA run's adapters with the base model's config beside them (its
        labels: `smartft eval` / `predict` size the base model's head from it)."""
        model: Any = self.unwrapped
        model.save_pretrained(self.out)
        if self.cfg.peft:
            model.config.save_pretrained(self.out)

    def chosen_on(self) -> str:
        """What chose the weights that eval_* scores: "end" (the last update), or "dev" /
        "holdout" (the best evaluation there, restored by --load_best_model_at_end). Dev-chosen
        figures read dev more than once: reports read such runs at their last evaluation."""
        loop = self.loop
        if self.best_state is None or loop.best_step in (None, loop.step):
            return "end"
        return "holdout" if self.cfg.holdout_fraction > 0 else "dev"

    def results(self, runtime: float) -> dict[str, Any]:
        cfg, loop, times = self.cfg, self.loop, self.step_times
        examples_seen = len(self.data.train) * len(times) / self.updates_per_epoch
        results: dict[str, Any] = {
            "task": self.spec.name,
            "method": self.method.name,
            "seed": cfg.seed,
            "model": cfg.model_name_or_path,
            "train_examples": len(self.data.train),
            "eval_examples": len(self.data.eval) if self.data.eval else 0,
            "eval_split": "holdout" if cfg.holdout_fraction > 0 else self.spec.eval_split,
            "train_steps": loop.step,
            "train_runtime_s": round(runtime + (self.before or 0.0), 2),  # every part's
            "train_runtime_before_resume_s": (
                None if self.before is None else round(self.before, 2)  # None: not recorded
            ),
            "train_samples_per_second": round(examples_seen / max(runtime, 1e-9), 3),
            "step_time_median_s": round(statistics.median(times), 5) if times else None,
            "main_metric": self.main_metric,
            "best_step": loop.best_step,
            "best_metric": loop.best_metric,
            "skipped_updates": loop.skipped_updates,
            "resumed_from": str(self.resume) if self.resume else None,
            "precision": self.precision.name,
            "stopped_early": self.patience_spent(),
            "checkpoint_chosen_on": self.chosen_on(),
            **self.method.counters(),
            **provenance(),  # the commit and CPU that produced these numbers
        }
        if self.precision.scaler is not None:
            results["overflow_skips"] = loop.overflow_skips
        if self.warnings:
            results["warnings"] = list(self.warnings)
        if self.accelerator.num_processes > 1:  # every process must hold the same model
            results["replica_checksums"] = replica_checksums(
                self.accelerator, self.unwrapped, self.method
            )
        return results


def refuse_for_shape(run: RunConfig, shape: str) -> None:
    """What a tagging, multiple-choice or span run cannot do: the fast mode's random rows are
    input rows while such a model's outputs are tokens, questions or start/end pairs, and
    distillation targets are one distribution per sentence."""
    flat = run.flat()
    fast = [f"--{k}" for k in ("smart_fraction", "bregman_fraction") if flat.get(k, 1.0) < 1]
    what = {"token": "a tagging", "choice": "a multiple-choice", "span": "a span"}[shape]
    if fast:
        raise ConfigError(
            f"{' and '.join(fast)} below 1 (the fast mode) works on sentence tasks only; "
            f"{what} task regularizes every output"
        )
    if run.train.teachers:
        raise ConfigError(
            f"--teachers (distillation) works on sentence tasks only, not {what} task"
        )
