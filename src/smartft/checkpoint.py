"""Crash-safe checkpoints: written to a temporary folder, flushed, renamed, then marked complete.

A checkpoint `checkpoint-N/` holds the model (safetensors), optimizer and scheduler states, the
method's state (e.g. the SMART teacher, as safetensors), the loop state (JSON), the best weights
so far, and one RNG file per process. Only folders with the `COMPLETE` marker count; anything
else found in the output folder (a `.checkpoint-N.tmp`, an unmarked `checkpoint-N`) is the
leftover of a killed write and is removed before resuming. Every torch pickle here is loaded with
`weights_only=True`, so a crafted checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from smartft.errors import SmartftError
from smartft.output import ordinary_permissions

PREFIX = "checkpoint-"
COMPLETE = "COMPLETE"
STATE_FILE = "trainer_state.json"
BEST_FILE = "best_model.safetensors"
WEIGHTS_FILE = "model.safetensors"
SCALER_FILE = "scaler.pt"


class CheckpointError(SmartftError):
    """A checkpoint could not be written or read (disk full, unwritable, corrupt)."""


@dataclass
class LoopState:
    """Everything about the loop's position needed to continue exactly where it stopped."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # micro-batches already taken from the current epoch
    best_metric: float | None = None
    best_step: int | None = None
    evaluated_at: list[int] = field(default_factory=list)
    window: dict[str, float] = field(default_factory=dict)  # logged sums since the last log line
    window_batches: int = 0
    skipped_updates: int = 0
    consecutive_skips: int = 0
    last_finite_loss: float | None = None
    last_finite_step: int | None = None
    improved_at: int | None = None  # the last evaluation that beat the best by the threshold
    log_lines: int | None = None  # metrics.jsonl's length when the checkpoint was written
    overflow_skips: int = 0  # fp16: updates the gradient scaler skipped
    # training wall time up to this checkpoint over every part of the run; None in checkpoints
    # written before it was recorded, so a resumed run's total is then unknown, not understated
    elapsed_s: float | None = None


def fault_point(name: str, value: int) -> None:
    """Testing aid: `SMARTFT_KILL_AT=update:7` or `checkpoint:4` makes the process SIGKILL itself
    right after update 7, or halfway through writing checkpoint 4 (used by the resume tests)."""
    if os.environ.get("SMARTFT_KILL_AT") == f"{name}:{value}":
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _step_of(path: Path) -> int:
    return int(path.name[len(PREFIX) :])


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints in `out`, oldest first."""
    if not out.is_dir():
        return []
    found = [
        p
        for p in out.iterdir()
        if p.is_dir() and re.fullmatch(rf"{PREFIX}\d+", p.name) and (p / COMPLETE).is_file()
    ]
    return sorted(found, key=_step_of)


def remove_leftovers(out: Path) -> list[Path]:
    """Delete the remains of interrupted writes; returns what was removed."""
    removed: list[Path] = []
    if not out.is_dir():
        return removed
    for path in out.iterdir():
        temporary = path.name.startswith(f".{PREFIX}") and path.name.endswith(".tmp")
        unmarked = re.fullmatch(rf"{PREFIX}\d+", path.name) and not (path / COMPLETE).is_file()
        if path.is_dir() and (temporary or unmarked):
            shutil.rmtree(path)
            removed.append(path)
    return removed


def resolve_resume(value: str | None, out: Path) -> Path | None:
    """`auto`: the newest complete checkpoint in `out` (None to start fresh); else a path."""
    if not value:
        return None
    if value == "auto":
        found = complete_checkpoints(out)
        return found[-1] if found else None
    path = Path(value)
    if not path.is_dir():
        raise CheckpointError(
            f"--resume_from_checkpoint {value}: no such checkpoint folder; use 'auto' to pick "
            "the newest complete one in --output_dir"
        )
    if not (path / COMPLETE).is_file():
        raise CheckpointError(
            f"--resume_from_checkpoint {value}: not a complete smartft "
            "checkpoint (no COMPLETE marker); use 'auto' to pick the newest "
            "complete one"
        )
    return path


def _rng_state() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            position,
            has_gauss,
            cached,
        ],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    out: Path,
    loop: LoopState,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    method: Any,
    best_state: dict[str, torch.Tensor] | None,
    accelerator: Any,
    limit: int | None,
    scaler: Any = None,
) -> Path:
    """Write `checkpoint-<step>` atomically; keep at most `limit` complete checkpoints."""
    final = out / f"{PREFIX}{loop.step}"
    temporary = out / f".{PREFIX}{loop.step}.tmp"
    main = accelerator.is_main_process
    try:
        if main:
            if temporary.exists():
                shutil.rmtree(temporary)
            temporary.mkdir(parents=True)
        accelerator.wait_for_everyone()
        torch.save(_rng_state(), temporary / f"rng-{accelerator.process_index}.pt")
        if main:
            save_model(model, str(temporary / WEIGHTS_FILE))
            torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
            fault_point("checkpoint", loop.step)
            torch.save(scheduler.state_dict(), temporary / "scheduler.pt")
            if scaler is not None:  # fp16's gradient scale
                torch.save(scaler.state_dict(), temporary / SCALER_FILE)
            method.save(temporary)
            if best_state is not None and loop.best_step != loop.step:
                save_file(
                    {k: v.contiguous() for k, v in best_state.items()}, str(temporary / BEST_FILE)
                )
            (temporary / STATE_FILE).write_text(json.dumps(asdict(loop)), encoding="utf-8")
        accelerator.wait_for_everyone()
        if main:
            ordinary_permissions(temporary)
            for path in temporary.iterdir():
                _fsync(path)
            if final.exists():
                shutil.rmtree(final)
            os.replace(temporary, final)
            (final / COMPLETE).write_text("", encoding="utf-8")
            _fsync(final / COMPLETE)
            _fsync(out)
            if limit:
                for old in complete_checkpoints(out)[:-limit]:
                    shutil.rmtree(old)
        accelerator.wait_for_everyone()
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
        if main:
            shutil.rmtree(temporary, ignore_errors=True)
        found = complete_checkpoints(out)
        last = (
            f"the last complete checkpoint ({found[-1]}) is intact"
            if found
            else "no complete checkpoint exists yet"
        )
        free = shutil.disk_usage(out).free // 1024
        raise CheckpointError(
            f"could not write checkpoint {final} ({err}); free space there: {free} KB; {last}"
        ) from None
    return final


def load(
    folder: Path,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    method: Any,
    process_index: int,
    scaler: Any = None,
) -> tuple[LoopState, dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Restore weights, optimizer, scheduler and method in place; returns the loop state, the
    best weights (if stored) and this process's RNG state (to restore once the data iterator
    exists, since creating it draws from the global RNG)."""
    reading = WEIGHTS_FILE  # the file being read, named if it is damaged

    def pickled(name: str) -> Any:
        nonlocal reading
        reading = name
        return torch.load(folder / name, weights_only=True)

    try:
        load_model(model, str(folder / WEIGHTS_FILE))
        optimizer.load_state_dict(pickled("optimizer.pt"))
        scheduler.load_state_dict(pickled("scheduler.pt"))
        if scaler is not None and (folder / SCALER_FILE).is_file():
            scaler.load_state_dict(pickled(SCALER_FILE))
        reading = "the method's state"
        method.load(folder)
        reading = STATE_FILE
        loop = LoopState(**json.loads((folder / STATE_FILE).read_text(encoding="utf-8")))
        reading = BEST_FILE
        best = load_file(str(folder / BEST_FILE)) if (folder / BEST_FILE).is_file() else None
        rng = pickled(f"rng-{process_index}.pt")
    except (*READ_ERRORS, pickle.UnpicklingError, SafetensorError) as err:
        raise CheckpointError(f"cannot resume from {folder}: {reading} {damage(err)}") from None
    return loop, best, rng


READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError)


def damage(err: BaseException) -> str:
    """What went wrong reading a checkpoint file, in one line. (torch's own message for an
    unreadable pickle advises loading it with weights_only=False: wrong for a damaged file.)"""
    if isinstance(err, FileNotFoundError):
        return "is missing"
    if isinstance(err, pickle.UnpicklingError | EOFError):
        return "is damaged (not a readable torch file)"
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"is damaged ({first.split('. This can happen')[0]})"
