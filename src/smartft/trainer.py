"""`MethodTrainer`: any smartft method inside transformers' `Trainer`.

It drives the method through the same hooks as smartft's own step: `before_forward` and
`loss_terms` around the clean forward (in `compute_loss`, training only), `before_update` once the
gradients are complete and before clipping, `after_step` after every optimizer update. The
method's state is saved into each checkpoint folder (main process only) and restored on resume.
`SmartTrainer` is the same trainer with SMART and its two config objects as keyword arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from smartft.methods import Method, SetupInfo, get_method
from smartft.modeling import is_regression
from smartft.regularizer import SmartConfig
from smartft.teacher import BregmanConfig


class _MethodCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(self, trainer: MethodTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.setup_method(state.max_steps)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.before_update()  # a no-op when `_clip_grad_norm` already ran it

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.updated = False
        if not self.trainer.accelerator.optimizer_step_was_skipped:
            self.trainer.method.after_step(self.trainer.unwrapped())

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            self.trainer.method.save(folder)


class MethodTrainer(Trainer):  # type: ignore[misc]
    """A `Trainer` that optimizes the task loss plus any smartft method's terms.

    >>> trainer = MethodTrainer(model=model, args=args, train_dataset=ds, method="r3f",
    ...                         method_configs=[R3FConfig(r3f_lambda=1.0)])

    `method` is a registered name (`smartft methods`) or a `Method` instance; `method_configs`
    are its config objects (defaults for any left out). Classification or regression follows the
    model: regression when `problem_type` is "regression" or it has one output.
    """

    def __init__(
        self,
        *args: Any,
        method: str | Method[Any] = "smart",
        method_configs: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(method, str):
            configs = {type(c): c for c in method_configs or []}
            method = get_method(method)(configs)
        self.method: Method[Any] = method
        # the task loss is a batch mean, as the method's terms are: both are then divided by the
        # accumulation steps alike (a loss normalised by the window's item count would not be)
        self.model_accepts_loss_kwargs = False
        self._resume_from: str | None = None
        self._ready = False
        self.updated = False
        self.add_callback(_MethodCallback(self))

    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)  # type: ignore[no-any-return]

    def setup_method(self, total_steps: int) -> None:
        if self._ready:
            return
        model = self.unwrapped()
        info = SetupInfo(
            total_steps,
            is_regression(model.config),
            self.args.seed,
            self.args.process_index,
            self._train_batches,
            self.args.world_size,
        )
        self.method.setup(model, info)
        if self._resume_from:
            self.method.load(Path(self._resume_from))
        self._ready = True

    def _train_batches(self) -> Any:
        device = self.args.device
        loader = self.get_train_dataloader()
        return ({k: v.to(device) for k, v in b.items()} for b in loader)

    def train(
        self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)  # type: ignore[no-untyped-call]
        self._resume_from = str(resume_from_checkpoint) if resume_from_checkpoint else None
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _backward(self, loss: torch.Tensor) -> None:
        """The backward a method may run before the clean forward, scaled like the Trainer's."""
        self.accelerator.backward(loss / self.current_gradient_accumulation_steps)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        training = model.training and self._ready
        if training:
            self.method.before_forward(self.unwrapped(), inputs, self._backward)
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if training:
            terms = self.method.loss_terms(self.unwrapped(), inputs, outputs.logits)
            loss = loss + sum(terms.values())
        return (loss, outputs) if return_outputs else loss

    def before_update(self) -> None:
        """The method's gradient hook, once per update, before clipping where the Trainer clips."""
        if not self.updated and self._ready:
            self.method.before_update(self.unwrapped())
            self.updated = True

    def _clip_grad_norm(self, model: torch.nn.Module) -> Any:
        self.before_update()
        return super()._clip_grad_norm(model)  # type: ignore[no-untyped-call]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # training logs gain the last batch's R_s, D_Breg, ... values
            logs = {**logs, **{k: round(v, 8) for k, v in self.method.log_values().items()}}
        super().log(logs, start_time)


class SmartTrainer(MethodTrainer):
    """`MethodTrainer` with SMART: the full objective (R_s and the mean-teacher Bregman term).

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
        configs = [smart_config or SmartConfig(), bregman_config or BregmanConfig()]
        super().__init__(*args, method="smart", method_configs=configs, **kwargs)
