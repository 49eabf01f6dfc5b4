"""Where a run's numbers come from: the code (git commit, whether its source differed from that
commit, the package version) and the machine (CPU model, native bfloat16), written into every
run record and bench report so that a figure can be traced to what produced it and two runs on
different machines can be told apart."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

# the folder of the smartft sources that are running (a frozen worktree's, under a study)
PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """The commit the running sources belong to (None outside a git checkout, e.g. an installed
    wheel), whether they differ from it (tracked changes or new files under the package), and
    the installed version. Asked anew for every run: a long-lived process may see commits."""
    commit = _git("rev-parse", "HEAD")
    dirty = None if commit is None else bool(_git("status", "--porcelain", "--", "."))
    try:
        version = importlib.metadata.version("smartft")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"git_commit": commit, "git_dirty": dirty, "smartft_version": version}


def cpu_model() -> str:
    """The processor's marketing name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX-512 BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@functools.cache
def machine() -> dict[str, Any]:
    """What a timing or a bf16 result depends on."""
    return {
        "cpu_model": cpu_model(),
        "cpu_native_bf16": native_cpu_bf16(),
        "torch_version": torch.__version__,
    }


def provenance() -> dict[str, Any]:
    """Code and machine, for a run record."""
    return {**code_version(), **machine()}
