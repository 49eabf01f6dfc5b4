"""`smartft sweep`: a grid of training runs, one after another, resumable.

A run is finished when its folder holds `all_results.json`; a folder without it is the leftover of
an interrupted run. That run continues from its newest complete checkpoint when it wrote one (runs
with `save_strategy: epoch` or `steps`) and its options are unchanged; otherwise it is cleared and
started again. Each run is a `smartft train` subprocess (its memory is returned when it ends; a
crash stops only that run) whose options are written to the run folder as `run-options.yaml`, its
grid coordinates as `sweep.yaml`. A finished run that saves no model (`save_model: false`) keeps
no checkpoint either: they were there only to survive an interruption.

A run may start from another run's saved model (`model_name_or_path`) or learn from saved
teachers (`teachers`) in the same runs folder: it waits until they are there. A clone of the
repository holds a finished run's records but never its weights, so a finished run whose model a
waiting run needs, and that is not there, is run again first (its new records replace the old
ones: they are the records of the model the later runs use).

Several sweeps may work through the same grid at once (one per core, or per GPU process): a run is
taken under an exclusive lock (`RUNS_DIR/.locks/RUN.lock`, an OS lock that dies with the process
holding it, so a killed sweep leaves nothing stale), and a sweep skips the runs another one holds.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from smartft.checkpoint import PREFIX, complete_checkpoints
from smartft.config import load_yaml, resolve, write_yaml
from smartft.errors import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so give concurrent sweeps disjoint --tasks
    fcntl = None  # type: ignore[assignment]

SWEEP_FILE = "sweep.yaml"
LOCKS = ".locks"
KEYS = ("runs_dir", "base", "variants", "grid")


@dataclass
class Run:
    """One cell of the grid: its folder (relative to runs_dir), options and grid coordinates."""

    name: str
    options: dict[str, Any]
    axes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sweep:
    runs_dir: Path
    base: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    grids: list[dict[str, list[Any]]]  # each expanded on its own; the runs are concatenated


def parse_value(text: str) -> Any:
    """A CLI value as YAML reads it ('3' -> 3, '1e-5' -> 1e-05, 'true' -> True)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads '1e-5' as a string
        except ValueError:
            return value
    return value


def from_file(path: str | None) -> dict[str, Any]:
    data = load_yaml(path) if path else {}
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown sweep key(s) {', '.join(unknown)}; use {', '.join(KEYS)}"
        )
    return data


def _as_lists(grid: Any) -> dict[str, list[Any]]:
    if not isinstance(grid, dict):
        raise ConfigError("sweep: each grid must be a mapping of option -> list of values")
    return {str(k): list(v) if isinstance(v, list) else [v] for k, v in grid.items()}


def _select_tasks(
    grids: list[dict[str, list[Any]]], wanted: list[str]
) -> list[dict[str, list[Any]]]:
    """`--tasks` chooses among the tasks a sub-grid names, since its other values may have been
    chosen for those tasks (a study's per-task rows); a sub-grid that names none runs the given
    tasks. `--grid task_name=...` replaces a sub-grid's tasks instead."""
    out = []
    for grid in grids:
        named = grid.get("task_name")
        kept = wanted if named is None else [t for t in named if t in wanted]
        if kept:
            out.append({**grid, "task_name": kept})
    missing = [t for t in wanted if not any(t in g["task_name"] for g in out)]
    if missing:
        offered = sorted({str(t) for g in grids for t in g.get("task_name", [])})
        raise ConfigError(
            f"sweep: --tasks {','.join(missing)}: the sweep file's grid names only "
            f"{', '.join(offered)}, and --tasks chooses among them (--grid task_name=... "
            "replaces them)"
        )
    return out


def _select_variants(
    sub_grids: list[dict[str, list[Any]]], variants: dict[str, Any], chosen: list[str]
) -> list[dict[str, list[Any]]]:
    """`--variants` runs only the named variants of the file, each sub-grid keeping its own
    settings and order (e.g. a study's headline methods first, its ablations later); a sub-grid
    left with none of them is dropped."""
    unknown = [v for v in chosen if v not in variants]
    if unknown:
        raise ConfigError(
            f"sweep: --variants {','.join(unknown)}: the sweep file defines only "
            f"{', '.join(variants) or 'none'}"
        )
    kept = []
    for grid in sub_grids:
        names = [v for v in grid.get("variants") or list(variants) if v in chosen]
        if names:
            kept.append({**grid, "variants": names})
    return kept


def build(
    data: dict[str, Any],
    *,
    runs_dir: str | None = None,
    tasks: str | None = None,
    methods: str | None = None,
    only_variants: str | None = None,
    seeds: str | None = None,
    sets: list[str] | None = None,
    grids: list[str] | None = None,
) -> Sweep:
    """Merge a sweep file with command-line additions (which win, in every sub-grid, except
    that `--tasks` and `--variants` choose among the tasks and variants the file names).

    `grid` is a mapping, or a list of mappings run one after the other; a sub-grid may name
    the variants it runs under the key `variants` (default: all).
    """
    base = dict(data.get("base") or {})
    variants = {str(k): dict(v or {}) for k, v in (data.get("variants") or {}).items()}
    raw = data.get("grid") or {}
    sub_grids = [_as_lists(g) for g in (raw if isinstance(raw, list) else [raw])]
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        base[key.strip()] = parse_value(value)
    extra: dict[str, list[Any]] = {}
    for item in grids or []:
        key, sep, values = item.partition("=")
        if not sep:
            raise ConfigError(f"--grid expects key=v1,v2,..., got {item!r}")
        extra[key.strip()] = [parse_value(v) for v in values.split(",")]
    if tasks:
        sub_grids = _select_tasks(sub_grids, tasks.split(","))
    if seeds:
        extra["seed"] = [int(s) for s in seeds.split(",")]
    if methods and only_variants:
        raise ConfigError("sweep: give --methods (new variants) or --variants (the file's ones)")
    if methods:
        variants = {m: {"method": m} for m in methods.split(",")}
        for grid in sub_grids:
            grid.pop("variants", None)
    if only_variants:
        sub_grids = _select_variants(sub_grids, variants, only_variants.split(","))
    if not variants:
        variants = {str(base.get("method", "plain")): {}}
    sub_grids = [{**grid, **extra} for grid in sub_grids]
    folder = runs_dir or data.get("runs_dir")
    if not folder:
        raise ConfigError("sweep: give --runs_dir (or runs_dir: in the sweep file)")
    for grid in sub_grids:
        if "task_name" not in grid and "task_name" not in base:
            raise ConfigError("sweep: no task; give --tasks or grid: {task_name: [...]}")
        unknown = sorted(set(grid.get("variants", [])) - set(variants))
        if unknown:
            raise ConfigError(f"sweep: grid names unknown variant(s) {', '.join(unknown)}")
        for reserved in ("output_dir", "overwrite_output_dir", "resume_from_checkpoint"):
            if reserved in base or reserved in grid:
                raise ConfigError(f"sweep: '{reserved}' is set per run by the sweep")
    return Sweep(Path(folder), base, variants, sub_grids)


def _folder_value(value: Any) -> str:
    return str(value).replace("/", "_")


PLACEHOLDERS = ("{task_name}", "{seed}", "{variant}")


def fill(options: dict[str, Any], variant: str) -> dict[str, Any]:
    """Text values may name the run's own task, seed and variant: `{task_name}`, `{seed}`,
    `{variant}` (e.g. each seed fine-tunes the multi-task model of the same seed)."""
    values = {
        "{task_name}": str(options.get("task_name", "")),
        "{seed}": str(options.get("seed", 42)),
        "{variant}": variant,
    }
    out = {}
    for key, value in options.items():
        if isinstance(value, str) and key != "task_name":
            for placeholder in PLACEHOLDERS:
                value = value.replace(placeholder, values[placeholder])
        out[key] = value
    return out


def _expand_grid(sweep: Sweep, grid: dict[str, list[Any]]) -> list[Run]:
    chosen = grid.get("variants") or list(sweep.variants)
    keys = [k for k in grid if k != "variants"]
    axes = [k for k in keys if k not in ("task_name", "seed")]
    runs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        for variant in chosen:
            merged = fill({**sweep.base, **sweep.variants[variant], **point}, variant)
            task, seed = merged.get("task_name"), merged.get("seed", 42)
            parts = [
                _folder_value(task),
                *(f"{k}={_folder_value(point[k])}" for k in axes),
                _folder_value(variant),
                f"seed{seed}",
            ]
            resolve({}, merged, f"sweep run {'/'.join(parts)}")  # same checks as `train`
            coords = {"task": task, "variant": variant, "seed": seed, **{k: point[k] for k in axes}}
            runs.append(Run("/".join(parts), merged, coords))
    return runs


def expand(sweep: Sweep) -> list[Run]:
    """Every combination of grid values × variants, each checked like a `train` command line.

    Folders read `TASK[/key=value...]/VARIANT/seedN`, so the report can group them. A run that
    two sub-grids both produce (same folder, same options) is kept once.
    """
    runs: dict[str, Run] = {}
    for grid in sweep.grids:
        for run in _expand_grid(sweep, grid):
            if run.name in runs and runs[run.name].options != run.options:
                raise ConfigError(
                    f"sweep: two different runs map to {run.name}; give variants distinct names"
                )
            runs.setdefault(run.name, run)
    return list(runs.values())


def is_done(folder: Path) -> bool:
    return (folder / "all_results.json").is_file()


def has_model(folder: Path) -> bool:
    """The run's saved model (or LoRA adapters: peft's file name; peft is an optional extra) is
    in its folder."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    names = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, "adapter_model.safetensors")
    return any((folder / name).is_file() for name in names)


def needs(sweep: Sweep, run: Run) -> list[str]:
    """The runs of this runs folder (named as in `Run.name`) whose saved models `run` starts from
    (`model_name_or_path`) or learns from (`teachers`); other models are not the sweep's concern."""
    teachers = run.options.get("teachers") or []
    paths = [run.options.get("model_name_or_path")]
    paths += teachers.split(",") if isinstance(teachers, str) else list(teachers)
    root = sweep.runs_dir.resolve()
    found = []
    for path in (Path(str(p).strip()).resolve() for p in paths if p and str(p).strip()):
        if path != root and path.is_relative_to(root):
            found.append(path.relative_to(root).as_posix())
    return found


def _to_redo(sweep: Sweep, runs: list[Run]) -> set[str]:
    """Finished runs of this selection whose saved models an unfinished run needs but that are
    not here (a fresh clone, or a model deleted by hand): they are run again."""
    names = {r.name for r in runs}
    return {
        name
        for run in runs
        if not is_done(sweep.runs_dir / run.name)
        for name in needs(sweep, run)
        if name in names and is_done(sweep.runs_dir / name) and not has_model(sweep.runs_dir / name)
    }


def _producers_first(sweep: Sweep, runs: list[Run]) -> list[Run]:
    """The runs in grid order, except that a run comes after the runs whose models it needs.
    Needs no run can meet are errors: a run that saves no model, runs that need each other."""
    by_name = {r.name: r for r in runs}
    depth: dict[str, int] = {}

    def level(run: Run, path: tuple[str, ...]) -> int:
        if run.name in path:
            cycle = (*path[path.index(run.name) :], run.name)
            raise ConfigError(f"sweep: runs need each other's models: {' -> '.join(cycle)}")
        if run.name not in depth:
            parents = [by_name[n] for n in needs(sweep, run) if n in by_name]
            for parent in parents:
                if not parent.options.get("save_model", True):
                    raise ConfigError(
                        f"sweep: {run.name} needs the model of {parent.name}, which saves none "
                        "(save_model: false)"
                    )
            depth[run.name] = 1 + max((level(p, (*path, run.name)) for p in parents), default=-1)
        return depth[run.name]

    return sorted(runs, key=lambda run: level(run, ()))


def _missing_models(sweep: Sweep, run: Run) -> list[str]:
    return [name for name in needs(sweep, run) if not has_model(sweep.runs_dir / name)]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def run_child(cmd: list[str], log: IO[str]) -> int:
    """Run one `smartft train` to its end. If the sweep itself is stopped (Ctrl-C, or SIGTERM from
    `kill` or a job scheduler, which reaches only the sweep), the child is stopped as well rather
    than left training into the run folder, where a restarted sweep would run it a second time.

    The handler is in place before the child starts (a SIGTERM in between killed the sweep and
    orphaned the child), and a SIGTERM while the child is starting is acted on once it has
    started, so that the child is never started and then forgotten."""
    child: subprocess.Popen[bytes] | None = None
    stopped: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:
        stopped.append(signum)
        if child is not None:
            raise SystemExit(128 + signum)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
    try:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        if stopped:
            raise SystemExit(128 + stopped[0])
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait()
        if main_thread:  # None: a handler set outside Python, which Python cannot reinstall
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def resumable(folder: Path, run: Run) -> Path | None:
    """The checkpoint an interrupted run continues from: its newest complete one, provided the
    run was started with the options it has now (else None: it starts again from scratch)."""
    spec = folder / "run-options.yaml"
    try:
        if not spec.is_file() or load_yaml(str(spec)) != run.options:
            return None
    except ConfigError:  # torn by the interruption: not the run's options
        return None
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def drop_checkpoints(folder: Path) -> None:
    """A finished run that saves no model keeps no checkpoint (each holds the weights, the
    optimizer's moments and any teacher: hundreds of MB per run in a long sweep)."""
    for path in folder.glob(f"*{PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path)


@contextlib.contextmanager
def claim(runs_dir: Path, name: str) -> Iterator[bool]:
    """Hold the run's lock for the block; yields False, without waiting, when another sweep holds
    it. The OS releases the lock when its holder ends, however it ends; the empty lock file stays
    (removing it would let a sweep that opened it just before lock a file no other sweep sees)."""
    if fcntl is None:
        yield True
        return
    path = runs_dir / LOCKS / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _held_elsewhere(runs_dir: Path, name: str) -> bool:
    """For `--dry_run`, which writes nothing: a run no sweep has locked has no lock file."""
    if fcntl is None or not (runs_dir / LOCKS / f"{name}.lock").is_file():
        return False
    with claim(runs_dir, name) as free:
        return not free


def run_all(sweep: Sweep, runs: list[Run], dry_run: bool = False) -> int:
    """Run what is not finished yet and no other sweep is running; returns the number of failed
    runs."""
    ordered = _producers_first(sweep, runs)
    redo = _to_redo(sweep, runs)

    def finished(run: Run) -> bool:  # has_model again: another sweep may have remade it since
        folder = sweep.runs_dir / run.name
        return is_done(folder) and not (run.name in redo and not has_model(folder))

    todo = [r for r in ordered if not finished(r)]
    again = f" ({len(redo)} again: later runs need the models they saved, not here)" if redo else ""
    print(
        f"sweep: {len(runs)} runs, {len(runs) - len(todo)} already finished, "
        f"{len(todo)} to run{again} in {sweep.runs_dir}",
        flush=True,
    )
    if dry_run:
        for run in todo:
            resume = None if run.name in redo else resumable(sweep.runs_dir / run.name, run)
            note = f" (resumes from {resume.name})" if resume else ""
            note = " (again: its saved model is not here)" if run.name in redo else note
            waits = _missing_models(sweep, run)
            note += f" (after {', '.join(waits)})" if waits else ""
            taken = _held_elsewhere(sweep.runs_dir, run.name)
            print(f"  {run.name}" + (" (another sweep is running it)" if taken else note))
        return 0
    spent: list[float] = []  # seconds per run this sweep ran, for its ETA
    failed = waiting = 0
    for index, run in enumerate(todo, start=1):
        head = f"[{index}/{len(todo)}] {run.name}"
        missing = _missing_models(sweep, run)
        if missing:  # not yet saved (another sweep is running them) or failed in this sweep
            print(f"{head}: waits for the saved model of {', '.join(missing)}", flush=True)
            waiting += 1
            continue
        with claim(sweep.runs_dir, run.name) as free:
            if not free or finished(run):
                print(f"{head}: another sweep has taken it", flush=True)
                continue
            code, line = _run_one(sweep, run, spent, len(todo) - index, run.name in redo)
        failed += code
        print(f"{head}: {line}", flush=True)
    if waiting:
        print(f"sweep: {waiting} runs wait for other runs' models: run the sweep again", flush=True)
    return failed


def _run_one(
    sweep: Sweep, run: Run, spent: list[float], left: int, afresh: bool = False
) -> tuple[int, str]:
    """One run, started or resumed (unless `afresh`), to its end: 0 or 1 (failed) and the
    sweep's line for it."""
    folder = sweep.runs_dir / run.name
    spec = folder / "run-options.yaml"
    resume = None if afresh else resumable(folder, run)
    if resume is None:
        if folder.exists():  # interrupted before its first checkpoint: start afresh
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write_yaml(folder / SWEEP_FILE, run.axes)  # the run's grid coordinates, for the report
        write_yaml(spec, run.options)
    command = [sys.executable, "-m", "smartft.cli", "train", "--config", str(spec)]
    command += ["--output_dir", str(folder), "--overwrite_output_dir", "--disable_tqdm"]
    if resume is not None:
        command += ["--resume_from_checkpoint", "auto"]
    started = time.perf_counter()
    with (folder / "train.log").open("a" if resume else "w", encoding="utf-8") as log:
        code = run_child(command, log)
    spent.append(time.perf_counter() - started)
    eta = f"; ETA {_duration(sum(spent) / len(spent) * left)}"
    if code == 0 and is_done(folder):
        status = f"done in {_duration(spent[-1])}"
        status += f" (resumed from {resume.name})" if resume else ""
        if not run.options.get("save_model", True):
            drop_checkpoints(folder)
        return 0, status + eta
    return 1, f"FAILED (exit {code}; see {folder / 'train.log'})" + eta
