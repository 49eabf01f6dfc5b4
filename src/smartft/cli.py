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
    rep = commands.add_parser("report", help="tables and plots over seeds from a runs folder")
    rep.add_argument("runs_dir", help="folder holding finished runs (e.g. a sweep's runs_dir)")
    rep.add_argument(
        "--out", default=None, help="where report.md/json and PNGs go (default: runs_dir)"
    )
    rep.add_argument("--baseline", default="plain", help="variant the others are compared with")
    rep.add_argument("--no_plots", action="store_true", help="skip the PNG plots")
    commands.add_parser("methods", help="list the fine-tuning methods")
    commands.add_parser("tasks", help="list the registered tasks")
    return parser


def _run_config(args: argparse.Namespace, skip: Sequence[str]) -> Any:
    cli = {k: v for k, v in vars(args).items() if k not in ("command", "config", *skip)}
    return resolve(cli, load_yaml(args.config) if args.config else None, args.config or "config")


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
    if args.command == "report":
        from pathlib import Path

        from smartft.report import report

        text, files = report(
            Path(args.runs_dir),
            Path(args.out) if args.out else None,
            args.baseline,
            plots=not args.no_plots,
        )
        print(text)
        for path in files:
            print(f"wrote {path}")
        return 0
    from smartft import engine

    if args.command == "train":
        results = engine.train(_run_config(args, ()))
        if int(os.environ.get("RANK", "0")) != 0:  # one process reports
            return 0
        metric = results.get(f"eval_{results['main_metric']}")
        print(json.dumps(json_safe(results), indent=2))
        if metric is not None:
            print(
                f"\n{results['task']} dev {results['main_metric']}: {metric:.4f}  "
                f"(model saved to {results['output_dir']})"
            )
        return 0
    cfg = _run_config(args, ("split", "output_file")).train
    if args.command == "eval":
        metrics = engine.evaluate(cfg, args.split)
        text = json.dumps(json_safe(metrics), indent=2)
        print(text)
        if args.output_file:
            with open(args.output_file, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return 0
    for path in engine.predict(cfg, args.split):
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
