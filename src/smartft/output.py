"""The run's output folder: checked (empty or explicitly reused, writable) before anything runs,
and the model card written beside a saved model."""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from smartft.config import RunConfig, TrainConfig
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


def tracker_config(run: RunConfig) -> dict[str, Any]:
    """The run's options for experiment trackers, which take numbers, strings and booleans."""
    return {k: "none" if v is None else v for k, v in run.flat().items()}


def command_line(run: RunConfig) -> str:
    """`smartft train` with every option that differs from its default: the run, reproduced."""
    parts = ["smartft", "train"]
    for config in (run.train, *run.methods.values()):
        for f in fields(config):
            value = getattr(config, f.name)
            if f.name in ("overwrite_output_dir", "resume_from_checkpoint") or value == f.default:
                continue
            parts += [f"--{f.name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return shlex.join(parts)


TRAINING_OPTIONS = (
    "seed",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "max_seq_length",
    "warmup_ratio",
    "weight_decay",
)


def table(rows: list[tuple[str, Any]], head: str) -> list[str]:
    cells = [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows]
    return [f"| {head} | value |", "|---|---|", *cells, ""]


def write_model_card(out: Path, run: RunConfig, results: dict[str, Any]) -> Path:
    """README.md of a saved model folder, as Hugging Face model folders carry: what was trained,
    how, how well, and the command that reproduces it."""
    cfg = run.train
    metrics = [
        (k[len("eval_") :], v)
        for k, v in results.items()
        if k.startswith("eval_") and k not in ("eval_examples", "eval_split")
    ]
    front = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "base_model": cfg.model_name_or_path,
        "tags": ["smartft", results["method"], results["task"]],
    }
    settings = [
        (f"`{f.name}`", str(getattr(c, f.name))) for c in run.methods.values() for f in fields(c)
    ]
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {results['task']}, fine-tuned with {results['method']} (smartft)",
        "",
        f"Fine-tuned from `{cfg.model_name_or_path}` on task `{results['task']}` "
        f"({results['train_examples']} training examples) with smartft {version()}, method "
        f"`{results['method']}`, seed {cfg.seed}, {results['precision']} precision; "
        f"{results['train_steps']} updates.",
        "",
        f"## Metrics on {results['eval_split']} ({results['eval_examples']} examples, the saved "
        "weights)",
        "",
        *table(metrics, "metric"),
        f"Best evaluation: {results['main_metric']} {results['best_metric']} at update "
        f"{results['best_step']}.",
        "",
        "## Training",
        "",
        *table([(f"`{k}`", str(getattr(cfg, k))) for k in TRAINING_OPTIONS], "option"),
        *(["## Method settings", "", *table(settings, "option")] if settings else []),
        "## Reproduce",
        "",
        f"```bash\n{command_line(run)}\n```",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        f'model = AutoModelForSequenceClassification.from_pretrained("{out}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{out}")',
        "```",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def version() -> str:
    try:
        return importlib.metadata.version("smartft")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def ordinary_permissions(folder: Path) -> None:
    """Give the files written into `folder` the permissions the umask grants (safetensors writes
    its file through a private temporary file, which leaves it readable by its owner only)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mode & 0o777 != 0o666 & ~mask:
            path.chmod(0o666 & ~mask)
