"""`smartft train | eval | predict | sweep | report | methods | tasks`: the command line.

User errors (bad data, flags, paths) print one message and exit with code 2, no traceback.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from smartft.config import TrainConfig, add_arguments, all_config_classes, load_yaml, resolve
from smartft.errors import SmartftError
from smartft.metrics import json_safe


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching (`--lr` is not `--lr_scheduler_type`), which also knows
    its subcommands' parsers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self.commands: dict[str, Parser] = {}


# what `eval` and `predict` use of the training options
INFERENCE_OPTIONS = (
    "model_name_or_path",
    "task_name",
    "data_dir",
    "train_file",
    "validation_file",
    "test_file",
    "text_columns",
    "label_column",
    "problem_type",
    "output_dir",
    "max_seq_length",
    "doc_stride",
    "max_answer_length",
    "per_device_eval_batch_size",
    "max_eval_samples",
    "bf16",
    "fp16",
    "tf32",
    "num_threads",
    "tune_cpu_allocator",
    "disable_tqdm",
    "trust_remote_code",
)


def _parser() -> Parser:
    parser = Parser(
        prog="smartft", description="Robust fine-tuning of pre-trained encoders (SMART and peers)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_model_commands(commands)
    _add_sweep(commands)
    _add_tune(commands)
    _add_report(commands)
    _add_bench(commands)
    commands.add_parser("methods", help="list the fine-tuning methods")
    commands.add_parser("tasks", help="list the registered tasks")
    parser.commands = dict(commands.choices)
    return parser


def _add_model_commands(commands: Any) -> None:
    """`train`, and `eval` / `predict` on a saved model."""
    train = commands.add_parser(
        "train",
        help="fine-tune a model on a task or your own files",
        usage="smartft train [--config FILE] [--OPTION VALUE ...]   (all options: --help)",
        description="Fine-tune, evaluate, save. Every option can also be "
        "given in a YAML file (--config); command-line flags win.",
    )
    train.add_argument("--config", default=None, help="YAML file with option: value lines")
    add_arguments(train, all_config_classes())
    for name, text in (
        ("eval", "score a saved model on a labeled split"),
        ("predict", "write GLUE-style submission files for test splits"),
    ):
        usage = f"smartft {name} --model_name_or_path DIR (--task_name T --data_dir D | files) ..."
        sub = commands.add_parser(name, help=text, description=text, usage=usage)
        sub.add_argument("--config", default=None, help="YAML file with option: value lines")
        sub.add_argument(
            "--split",
            default=None,
            help="split to use (default: the task's "
            + ("validation split)" if name == "eval" else "test split(s))"),
        )
        if name == "eval":
            sub.add_argument("--output_file", default=None, help="also write the metrics as JSON")
        sub.add_argument(
            "--allow_label_mismatch",
            action="store_true",
            help="score a model whose labels differ from the task's (a deliberate transfer, "
            "e.g. an RTE model on SciTail); the model's label ids are read as the task's",
        )
        add_arguments(sub, [TrainConfig], only=INFERENCE_OPTIONS, title="Model, data and precision")


NEGATIVE = re.compile(r"^-(\d|\.\d|inf$|nan$)")


def join_negative_values(argv: list[str]) -> list[str]:
    """`--learning_rate -1e-5` as `--learning_rate=-1e-5`: argparse would read the value as an
    option (it only recognises plain negative integers and decimals), so it would never reach
    the range check that names the problem."""
    out: list[str] = []
    for token in argv:
        if out and NEGATIVE.match(token) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


# names other tools use, and what they are called here
ALIASES = {
    "--lr": "--learning_rate",
    "--epochs": "--num_train_epochs",
    "--batch_size": "--per_device_train_batch_size",
    "--bs": "--per_device_train_batch_size",
    "--model": "--model_name_or_path",
    "--task": "--task_name",
    "--output": "--output_dir",
    "--max_length": "--max_seq_length",
}


def _known(parser: argparse.ArgumentParser) -> list[str]:
    return [o for o in parser._option_string_actions if o.startswith("--") and o != "--help"]


def _unknown_option(parser: argparse.ArgumentParser, token: str, extra: Sequence[str] = ()) -> None:
    """One line naming the unknown option and the closest known one; exits 2 (argparse)."""
    if not token.startswith("-"):
        parser.error(f"unexpected argument {token!r}")
    name = token.split("=", 1)[0]
    known = [*_known(parser), *extra]
    alias = ALIASES.get(name)
    close = [alias] if alias in known else difflib.get_close_matches(name, known, n=1)
    parser.error(f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else ""))


def _train_options_as_sets(parser: argparse.ArgumentParser, unknown: list[str]) -> list[str]:
    """`smartft sweep ... --max_train_samples 64`: train options given directly, as --set."""
    names = {f.name for cls in all_config_classes() for f in fields(cls)}
    sets: list[str] = []
    position = 0
    while position < len(unknown):
        token = unknown[position]
        key, has_value, value = token.removeprefix("--").partition("=")
        if not token.startswith("--") or key not in names:
            _unknown_option(parser, token, [f"--{n}" for n in names])
        if not has_value:
            following = unknown[position + 1] if position + 1 < len(unknown) else None
            if following is not None and not following.startswith("--"):
                value, position = following, position + 1
            else:
                value = "true"  # a bare flag
        sets.append(f"{key}={value}")
        position += 1
    return sets


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _parser()
    tokens = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    args, unknown = parser.parse_known_args(tokens)
    if unknown:
        command = parser.commands[args.command]
        if args.command not in ("sweep", "tune"):
            _unknown_option(command, unknown[0])
        args.set = [*args.set, *_train_options_as_sets(command, unknown)]
    return args


def _add_sweep(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="run a grid of tasks x methods x seeds (resumable)",
        description="Runs one after another; finished runs are skipped, an interrupted one "
        "continues from its newest complete checkpoint (or starts again if it wrote none); several "
        "sweeps over one grid share its runs (each run is locked). Grid from a YAML file "
        "(runs_dir, base, variants, grid) and/or flags.",
    )
    sweep.add_argument("--config", default=None, help="sweep YAML file")
    sweep.add_argument("--runs_dir", default=None, help="one folder per run goes here")
    sweep.add_argument(
        "--tasks",
        default=None,
        help="comma-separated task names; with a grid that names tasks, the ones of them to run",
    )
    sweep.add_argument("--methods", default=None, help="comma-separated methods (one variant each)")
    sweep.add_argument(
        "--variants",
        default=None,
        help="comma-separated variants of the sweep file, the ones of them to run",
    )
    sweep.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 1,2,3")
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a train option for every run (repeatable)",
    )
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="an extra grid axis over a train option (repeatable)",
    )
    sweep.add_argument("--dry_run", action="store_true", help="list the runs still to do")


def _add_tune(commands: Any) -> None:
    tune = commands.add_parser(
        "tune",
        help="choose the method and its settings on held-out training data (Optuna), workers "
        "on many machines",
        description="Each trial trains on the training set minus --holdout_fraction (default "
        "0.1) and is scored on that part; dev is never read. Start the same command on several "
        "processes or machines against one --storage to share the study; run it again to resume. "
        "Writes best.yaml, tune-report.md and, with --final_seeds, final.md. Any train option "
        "(--task_name, --model_name_or_path, ...) is given to every trial.",
    )
    tune.add_argument("--config", default=None, help="YAML file of train options for every trial")
    tune.add_argument("--output_dir", required=True, help="trials, best.yaml and reports go here")
    tune.add_argument(
        "--methods", default="plain,smart", help="comma-separated methods to choose among"
    )
    tune.add_argument(
        "--n_trials", type=int, default=10, help="trials this worker runs (0: only report)"
    )
    tune.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: sqlite:///OUTPUT_DIR/study.db; postgresql://user@"
        "host/db for workers on several machines)",
    )
    tune.add_argument("--study_name", default=None, help="default: the output folder's name")
    tune.add_argument(
        "--pruner",
        default="median",
        choices=("median", "halving", "threshold", "none"),
        help="stops trials early on their held-out score (default median)",
    )
    tune.add_argument(
        "--prune_below", type=float, default=None, help="--pruner threshold: the score to beat"
    )
    tune.add_argument(
        "--search", default=None, help="YAML: each method's (or '*': every method's) ranges"
    )
    tune.add_argument(
        "--final_seeds",
        default=None,
        help="e.g. 1,2,3,4,5: then train the winner and plain at their settings on the full "
        "training set, dev read once per run, and write the paired report",
    )
    tune.add_argument(
        "--sampler_seed", type=int, default=None, help="TPE sampler seed (one worker only)"
    )
    tune.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a train option"
    )


def _add_report(commands: Any) -> None:
    rep = commands.add_parser("report", help="tables and plots over seeds from runs folders")
    rep.add_argument(
        "runs_dirs",
        nargs="+",
        metavar="RUNS_DIR",
        help="folders holding finished runs (a sweep's runs_dir, or part of one: runs found in "
        "all of them are reported together)",
    )
    rep.add_argument(
        "--out", default=None, help="where report.md/json and PNGs go (default: the first RUNS_DIR)"
    )
    rep.add_argument("--baseline", default="plain", help="variant the others are compared with")
    rep.add_argument("--no_plots", action="store_true", help="skip the PNG plots")


def _add_bench(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="step time and peak memory of each method against plain fine-tuning",
        description="Times training steps of every variant side by side (interleaved, medians) "
        "and measures each one's peak memory in a fresh process; writes NAME.json and NAME.md.",
    )
    bench.add_argument(
        "--models",
        default="tiny,all-MiniLM-L6-v2",
        help="comma-separated: tiny (random, built in memory) and/or model paths or aliases",
    )
    bench.add_argument("--seq_lengths", default="64,128", help="padded lengths, comma-separated")
    bench.add_argument("--batch_size", type=int, default=16)
    bench.add_argument(
        "--variants",
        default=None,
        help="comma-separated; plain, trainer, smart-rs, smart, smart-low-memory, smart-fast, "
        "smart-pytorch, or METHOD[:key=value;...] (default: all named ones that are installed)",
    )
    bench.add_argument(
        "--precisions",
        default="float32",
        help="float32, bf16 and/or fp16 (GPU), comma-separated: each smartft variant in each "
        "(bf16/fp16 rows show their ratio to the same variant in float32)",
    )
    bench.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    bench.add_argument("--steps", type=int, default=3, help="timed steps per repetition")
    bench.add_argument("--repeats", type=int, default=4, help="repetitions (variants rotate)")
    bench.add_argument("--scaling", action="store_true", help="add the scaling settings")
    bench.add_argument("--no_memory", action="store_true", help="skip the memory probes")
    bench.add_argument(
        "--task_name",
        default="rte",
        help="the task whose head and batches are timed: rte, cosmosqa (k answers per example) "
        "or squad (start and end logits); real batches with --data_dir",
    )
    bench.add_argument(
        "--data_dir", default=None, help="the task's data folder: real training batches"
    )
    bench.add_argument(
        "--out",
        default="runs/bench",
        help="output folder (default runs/bench, a scratch folder: the committed figures in "
        "benchmarks/results are written only when --out names it)",
    )
    bench.add_argument("--name", default="bench", help="file name stem of the outputs")


def _run_config(args: argparse.Namespace, skip: Sequence[str]) -> Any:
    cli = {k: v for k, v in vars(args).items() if k not in ("command", "config", *skip)}
    return resolve(cli, load_yaml(args.config) if args.config else None, args.config or "config")


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from smartft import bench

    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    else:
        variants = [v for v in bench.DEFAULT_VARIANTS if bench.installed(v)]
        if "smart-pytorch" not in variants:
            print(
                "smartft bench: smart-pytorch is not installed, so it is left out "
                "(`make bench-deps` adds it)"
            )
    for name in variants:
        if not bench.installed(name):
            raise SmartftError(
                f"bench variant {name}: smart-pytorch is not installed (`make bench-deps`)"
            )
    variants = bench.with_precisions(variants, args.precisions.split(","))
    settings = bench.plan(
        [m.strip() for m in args.models.split(",") if m.strip()],
        [int(n) for n in args.seq_lengths.split(",")],
        args.batch_size,
        variants,
        args.scaling,
        data_dir=args.data_dir,
        task=args.task_name,
        threads=args.threads,
        warmup=args.warmup,
        steps=args.steps,
        repeats=args.repeats,
    )
    bench.run_bench(settings, Path(args.out), args.name, memory=not args.no_memory)
    print(f"wrote {Path(args.out) / (args.name + '.md')} and .json")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from smartft.tune import run_tune

    base: dict[str, Any] = dict(load_yaml(args.config)) if args.config else {}
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SmartftError(f"--set {pair}: expected KEY=VALUE")
        base[key] = value
    seeds = [int(s) for s in args.final_seeds.split(",")] if args.final_seeds else None
    summary = run_tune(
        base,
        [m.strip() for m in args.methods.split(",") if m.strip()],
        Path(args.output_dir),
        args.n_trials,
        storage=args.storage,
        study_name=args.study_name,
        pruner=args.pruner,
        prune_below=args.prune_below,
        search=args.search,
        final_seeds=seeds,
        sampler_seed=args.sampler_seed,
    )
    print(json.dumps(summary, indent=2))
    return 0


def _methods(args: argparse.Namespace) -> int:
    from smartft.methods import METHODS

    for name, method in METHODS.items():
        print(f"{name:12s} {method.summary}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from smartft.data.tasks import TASKS

    for name, spec in TASKS.items():
        kind = "regression" if spec.is_regression else f"{spec.num_labels} classes"
        if spec.tagging:
            kind = f"{spec.num_labels} tags"
        elif spec.shape == "choice":
            kind = f"{spec.num_labels} answers"
        elif spec.shape == "span":
            kind = "answer spans"
        print(f"{name:16s} {spec.folder:24s} {kind:12s} {', '.join(spec.metrics)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from smartft import sweep

    plan = sweep.build(
        sweep.from_file(args.config),
        runs_dir=args.runs_dir,
        tasks=args.tasks,
        methods=args.methods,
        only_variants=args.variants,
        seeds=args.seeds,
        sets=args.set,
        grids=args.grid,
    )
    failed = sweep.run_all(plan, sweep.expand(plan), dry_run=args.dry_run)
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from smartft.report import report

    text, files = report(
        [Path(d) for d in args.runs_dirs],
        Path(args.out) if args.out else None,
        args.baseline,
        plots=not args.no_plots,
    )
    print(text)
    for path in files:
        print(f"wrote {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from smartft.launch import train

    resolved = _run_config(args, ())
    results = train(resolved)
    if int(os.environ.get("RANK", "0")) != 0:  # one process reports
        return 0
    metric = results.get(f"eval_{results['main_metric']}")
    print(json.dumps(json_safe(results), indent=2))
    if metric is not None:
        folder = results["output_dir"]
        where = (
            f"model saved to {folder}"
            if resolved.train.save_model
            else f"no model saved; records in {folder}"
        )
        split = "holdout" if results.get("eval_split") == "holdout" else "dev"
        print(f"\n{results['task']} {split} {results['main_metric']}: {metric:.4f}  ({where})")
    return 0


def _inference(args: argparse.Namespace) -> int:
    from smartft import inference

    skip = ("split", "output_file", "allow_label_mismatch")
    cfg = _run_config(args, skip).train
    given = "max_seq_length" in vars(args) or "max_seq_length" in (
        load_yaml(args.config) if args.config else {}
    )
    if args.command == "eval":
        metrics = inference.evaluate(cfg, args.split, args.allow_label_mismatch, not given)
        text = json.dumps(json_safe(metrics), indent=2)
        print(text)
        if args.output_file:
            with open(args.output_file, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return 0
    for path in inference.predict(cfg, args.split, args.allow_label_mismatch, not given):
        print(f"wrote {path}")
    return 0


COMMANDS = {
    "methods": _methods,
    "tasks": _tasks,
    "sweep": _sweep,
    "tune": _tune,
    "bench": _bench,
    "report": _report,
    "train": _train,
    "eval": _inference,
    "predict": _inference,
}


def run(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    return COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run(argv)
    except SmartftError as err:
        print(f"smartft: error: {err}", file=sys.stderr)
        code = err.exit_code
    except KeyboardInterrupt:
        print("smartft: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
