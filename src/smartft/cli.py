"""`smartft train | eval | predict | sweep | report | methods | tasks`: the command line.

User errors (bad data, flags, paths) print one message and exit with code 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from smartft.config import TrainConfig, add_arguments, all_config_classes, load_yaml, resolve
from smartft.errors import SmartftError
from smartft.metrics import json_safe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartft", description="Robust fine-tuning of pre-trained encoders (SMART and peers)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_model_commands(commands)
    _add_sweep(commands)
    _add_report(commands)
    _add_bench(commands)
    commands.add_parser("methods", help="list the fine-tuning methods")
    commands.add_parser("tasks", help="list the registered tasks")
    return parser


def _add_model_commands(commands: Any) -> None:
    """`train`, and `eval` / `predict` on a saved model."""
    train = commands.add_parser(
        "train",
        help="fine-tune a model on a task or your own files",
        description="Fine-tune, evaluate, save. Every option can also be "
        "given in a YAML file (--config); command-line flags win.",
    )
    train.add_argument("--config", default=None, help="YAML file with option: value lines")
    add_arguments(train, all_config_classes())
    for name, text in (
        ("eval", "score a saved model on a labeled split"),
        ("predict", "write GLUE-style submission files for test splits"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--config", default=None, help="YAML file with option: value lines")
        sub.add_argument(
            "--split",
            default=None,
            help="split to use (default: the task's "
            + ("validation split)" if name == "eval" else "test split(s))"),
        )
        if name == "eval":
            sub.add_argument("--output_file", default=None, help="also write the metrics as JSON")
        add_arguments(sub, [TrainConfig])


def _add_sweep(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="run a grid of tasks x methods x seeds (resumable)",
        description="Runs one after another; finished runs are skipped, an interrupted one "
        "restarts cleanly. Grid from a YAML file (runs_dir, base, variants, grid) and/or flags.",
    )
    sweep.add_argument("--config", default=None, help="sweep YAML file")
    sweep.add_argument("--runs_dir", default=None, help="one folder per run goes here")
    sweep.add_argument("--tasks", default=None, help="comma-separated task names")
    sweep.add_argument("--methods", default=None, help="comma-separated methods (one variant each)")
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
    bench.add_argument("--data_dir", default=None, help="GLUE folder: real RTE batches")
    bench.add_argument("--out", default="benchmarks/results", help="output folder")
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
        threads=args.threads,
        warmup=args.warmup,
        steps=args.steps,
        repeats=args.repeats,
    )
    bench.run_bench(settings, Path(args.out), args.name, memory=not args.no_memory)
    print(f"wrote {Path(args.out) / (args.name + '.md')} and .json")
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "methods":
        from smartft.methods import METHODS

        for name, method in METHODS.items():
            print(f"{name:12s} {method.summary}")
        return 0
    if args.command == "tasks":
        from smartft.data.tasks import TASKS

        for name, spec in TASKS.items():
            kind = "regression" if spec.is_regression else f"{spec.num_labels} classes"
            print(f"{name:16s} {spec.folder:24s} {kind:12s} {', '.join(spec.metrics)}")
        return 0
    if args.command == "sweep":
        from smartft import sweep

        plan = sweep.build(
            sweep.from_file(args.config),
            runs_dir=args.runs_dir,
            tasks=args.tasks,
            methods=args.methods,
            seeds=args.seeds,
            sets=args.set,
            grids=args.grid,
        )
        failed = sweep.run_all(plan, sweep.expand(plan), dry_run=args.dry_run)
        return 1 if failed else 0
    if args.command == "bench":
        return _bench(args)
    if args.command == "report":
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
    if args.command == "train":
        from smartft.recipe import train

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
            print(f"\n{results['task']} dev {results['main_metric']}: {metric:.4f}  ({where})")
        return 0
    from smartft import inference

    cfg = _run_config(args, ("split", "output_file")).train
    if args.command == "eval":
        metrics = inference.evaluate(cfg, args.split)
        text = json.dumps(json_safe(metrics), indent=2)
        print(text)
        if args.output_file:
            with open(args.output_file, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return 0
    for path in inference.predict(cfg, args.split):
        print(f"wrote {path}")
    return 0


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
