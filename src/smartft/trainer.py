"""`SmartTrainer`: SMART inside transformers' `Trainer`.

The regularizer and the Bregman term join the loss in `compute_loss` (training only); a callback
updates the teacher after every optimizer step and saves it into each checkpoint folder (main
process only, so it is written once under several processes) and restores it on resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from smartft.methods.base import SetupInfo
from smartft.methods.smart import BregmanConfig, Smart, SmartConfig


class _SmartCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(self, trainer: SmartTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.setup_method(state.max_steps)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.method.after_step(self.trainer.unwrapped())

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            self.trainer.method.save(folder)


class SmartTrainer(Trainer):  # type: ignore[misc]
    """A `Trainer` that optimizes the full SMART objective.

    >>> trainer = SmartTrainer(model=model, args=args, train_dataset=ds,
    ...                        smart_config=SmartConfig(smart_lambda=1.0),
    ...                        bregman_config=BregmanConfig(bregman_mu=1.0))
    """

    def __init__(
        self,
        *args: Any,
        smart_config: SmartConfig | None = None,
        bregman_config: BregmanConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.method = Smart(
            {
                SmartConfig: smart_config or SmartConfig(),
                BregmanConfig: bregman_config or BregmanConfig(),
            }
        )
        self._resume_from: str | None = None
        self._ready = False
        self.add_callback(_SmartCallback(self))

    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)  # type: ignore[no-any-return]

    def setup_method(self, total_steps: int) -> None:
        if self._ready:
            return
        model = self.unwrapped()
        regression = getattr(model.config, "problem_type", None) == "regression"
        self.method.setup(
            model, SetupInfo(total_steps, regression, self.args.seed, self.args.process_index)
        )
        if self._resume_from:
            self.method.load(Path(self._resume_from))
        self._ready = True

    def train(
        self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)  # type: ignore[no-untyped-call]
        self._resume_from = str(resume_from_checkpoint) if resume_from_checkpoint else None
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if model.training and self._ready:
            terms = self.method.loss_terms(self.unwrapped(), inputs, outputs.logits)
            loss = loss + sum(terms.values())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # training logs gain the last batch's R_s, D_Breg, ... values
            logs = {**logs, **{k: round(v, 8) for k, v in self.method.log_values().items()}}
        super().log(logs, start_time)
