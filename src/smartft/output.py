"""The run's output folder: checked (empty or explicitly reused, writable) before anything runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from smartft.config import TrainConfig
from smartft.errors import ConfigError


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
