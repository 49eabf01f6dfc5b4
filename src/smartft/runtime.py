"""The process a run executes in: threads, the CPU allocator, accelerate, and talking across
processes (messages, averaged log values, replica checksums)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from smartft.config import TrainConfig
from smartft.errors import ConfigError
from smartft.methods import Method
from smartft.precision import Precision, choose


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


def default_threads(cores: int, load: float, processes: int = 1) -> int:
    """Torch threads per process when --num_threads is not given: the cores that other work
    (the 1-minute load average) leaves free, shared among this run's processes, at least 1.
    torch's own default takes every core, and a SMART step on a 2-core machine already busy
    with another run then took 3-8x as long as with one thread."""
    free = max(1, cores - round(load))
    return max(1, free // max(1, processes))


def set_threads(num_threads: int | None) -> int:
    """Apply --num_threads, else OMP_NUM_THREADS if set (torch reads it), else
    `default_threads`; returns the number of threads a process now uses."""
    if num_threads:
        torch.set_num_threads(num_threads)
    elif not os.environ.get("OMP_NUM_THREADS"):
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        torch.set_num_threads(default_threads(os.cpu_count() or 1, load, processes))
    return torch.get_num_threads()


def make_accelerator(cfg: TrainConfig, trackers: bool = False) -> tuple[Any, Precision]:
    """accelerate's Accelerator for this run (devices, processes, mixed precision and, for
    training, the --report_to trackers), and the run's working precision."""
    from accelerate import Accelerator

    set_threads(cfg.num_threads)
    cuda = torch.cuda.is_available()
    if cfg.tune_cpu_allocator and not cuda:
        tune_cpu_allocator()
    precision = choose(cfg.bf16, cfg.fp16, cfg.tf32, cuda)
    log_with = tracker_names(cfg.report_to) if trackers else []
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = ("RANK", "MASTER_ADDR")
    if world > 1 and not all(os.environ.get(k) for k in launcher):
        raise ConfigError(
            f"WORLD_SIZE={world} but only 1 process was started (no RANK/MASTER_ADDR from a "
            "launcher); launch with `torchrun --nproc_per_node N` or `accelerate launch`, or "
            "unset WORLD_SIZE"
        )
    accelerator = Accelerator(
        cpu=not cuda,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=log_with or None,
        project_dir=cfg.logging_dir or (Path(cfg.output_dir) / "logs" if cfg.output_dir else None),
    )
    if world > 1 and accelerator.num_processes != world:
        raise ConfigError(
            f"WORLD_SIZE={world} but only {accelerator.num_processes} process(es) "
            "joined; launch with `torchrun --nproc_per_node N` or "
            "`accelerate launch`"
        )
    return accelerator, precision


def tracker_names(report_to: str) -> list[str]:
    """--report_to as accelerate's tracker names, each known and installed, or a ConfigError;
    'all' is every installed one."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    names = [n.strip() for n in report_to.split(",") if n.strip()]
    known = list(LOGGER_TYPE_TO_CLASS)
    if names in ([], ["none"]):
        return []
    if names == ["all"]:
        return [n for n in known if importlib.util.find_spec(n) is not None]
    for name in names:
        if name not in known:
            raise ConfigError(
                f"--report_to: unknown tracker '{name}'; choose from none, all, {', '.join(known)}"
            )
        if importlib.util.find_spec(name) is None:
            extra = " (or `pip install smartft[tensorboard]`)" if name == "tensorboard" else ""
            raise ConfigError(
                f"--report_to {name}: the {name} package is not installed; "
                f"`pip install {name}`{extra}, or drop it from --report_to"
            )
    return names


def say(accelerator: Any, message: str) -> None:
    if accelerator.is_main_process:
        tqdm.write(message, file=sys.stderr)


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


def replica_checksums(
    accelerator: Any, model: torch.nn.Module, method: Method[Any]
) -> list[list[int]]:
    """[model, method state] checksums of every process, gathered."""
    local = torch.tensor(
        [[checksum(list(model.state_dict().values())), checksum(method.state_tensors())]],
        dtype=torch.int64,
        device=accelerator.device,
    )
    return [[int(v) for v in row] for row in accelerator.gather(local).tolist()]
