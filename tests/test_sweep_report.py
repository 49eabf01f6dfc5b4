"""Sweep grid expansion and resume, report statistics, and a tiny end-to-end sweep + report."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from smartft.checkpoint import COMPLETE
from smartft.config import write_yaml
from smartft.errors import ConfigError
from smartft.report import (
    Cell,
    Record,
    collect,
    collect_many,
    compare,
    markdown,
    ood_records,
    report,
    runs_table,
    summarize,
    tally,
    verdict,
    versus_text,
)
from smartft.sweep import build, claim, expand, run_all

from .test_engine import cli


def test_grid_expansion_names_and_options() -> None:
    data = {
        "runs_dir": "runs/x",
        "base": {"data_dir": "d", "num_train_epochs": 2},
        "variants": {
            "plain": {"method": "plain"},
            "smart-unit": {"method": "smart", "smart_projection": "unit"},
        },
        "grid": {"task_name": ["rte", "mrpc"], "seed": [1, 2]},
    }
    sweep = build(data, grids=["train_fraction=1.0,0.1"], sets=["learning_rate=5e-5"])
    runs = expand(sweep)
    assert len(runs) == 2 * 2 * 2 * 2
    names = {r.name for r in runs}
    assert "rte/train_fraction=0.1/smart-unit/seed2" in names
    run = next(r for r in runs if r.name == "mrpc/train_fraction=1.0/plain/seed1")
    assert run.options == {
        "data_dir": "d",
        "num_train_epochs": 2,
        "learning_rate": 5e-5,
        "method": "plain",
        "task_name": "mrpc",
        "seed": 1,
        "train_fraction": 1.0,
    }
    assert run.axes == {"task": "mrpc", "variant": "plain", "seed": 1, "train_fraction": 1.0}


def test_methods_flag_and_errors() -> None:
    runs = expand(build({}, runs_dir="r", tasks="rte", methods="plain,smart", seeds="1,2,3"))
    assert [r.name for r in runs][:2] == ["rte/plain/seed1", "rte/smart/seed1"]
    with pytest.raises(ConfigError, match="unknown option 'learnig_rate'"):
        expand(build({}, runs_dir="r", tasks="rte", sets=["learnig_rate=1"]))
    with pytest.raises(ConfigError, match="runs_dir"):
        build({}, tasks="rte")
    with pytest.raises(ConfigError, match="set per run"):
        build({}, runs_dir="r", tasks="rte", sets=["output_dir=x"])


def test_resume_skips_finished_and_restarts_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = build({}, runs_dir=str(tmp_path), tasks="rte", methods="plain", seeds="1,2,3")
    runs = expand(sweep)
    (tmp_path / "rte/plain/seed1").mkdir(parents=True)
    (tmp_path / "rte/plain/seed1/all_results.json").write_text("{}")
    (tmp_path / "rte/plain/seed2").mkdir(parents=True)
    (tmp_path / "rte/plain/seed2/half-written.bin").write_text("x")
    calls: list[str] = []

    def fake_call(cmd: list[str], log: object) -> int:
        folder = Path(cmd[cmd.index("--output_dir") + 1])
        calls.append(folder.name)
        assert not (folder / "half-written.bin").exists()  # leftovers were cleared
        (folder / "all_results.json").write_text("{}")
        return 0

    monkeypatch.setattr("smartft.sweep.run_child", fake_call)
    assert run_all(sweep, runs) == 0
    assert calls == ["seed2", "seed3"]
    assert yaml.safe_load((tmp_path / "rte/plain/seed3/sweep.yaml").read_text())["seed"] == 3
    calls.clear()
    assert run_all(sweep, runs) == 0 and calls == []


def test_an_interrupted_run_with_a_checkpoint_resumes_unless_its_options_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = build({}, runs_dir=str(tmp_path), tasks="rte", methods="plain", seeds="1,2,3")
    runs = expand(sweep)
    for seed, options in ((1, runs[0].options), (2, {**runs[1].options, "learning_rate": 1})):
        folder = tmp_path / f"rte/plain/seed{seed}"
        (folder / "checkpoint-4").mkdir(parents=True)
        (folder / "checkpoint-4" / COMPLETE).write_text("")
        (folder / "train.log").write_text("before the kill\n")
        write_yaml(folder / "run-options.yaml", options)
    (tmp_path / "rte/plain/seed3/checkpoint-4").mkdir(parents=True)
    (tmp_path / "rte/plain/seed3/checkpoint-4" / COMPLETE).write_text("")
    (tmp_path / "rte/plain/seed3/run-options.yaml").write_text("seed: [1\n")  # torn
    calls: dict[str, list[str]] = {}

    def fake_call(cmd: list[str], log: object) -> int:
        folder = Path(cmd[cmd.index("--output_dir") + 1])
        calls[folder.name] = cmd
        (folder / "all_results.json").write_text("{}")
        return 0

    monkeypatch.setattr("smartft.sweep.run_child", fake_call)
    assert run_all(sweep, runs) == 0
    assert calls["seed1"][-2:] == ["--resume_from_checkpoint", "auto"]
    assert "--resume_from_checkpoint" not in calls["seed2"]  # started with other options
    assert "--resume_from_checkpoint" not in calls["seed3"]  # its options file is unreadable
    assert (tmp_path / "rte/plain/seed1/train.log").read_text() == "before the kill\n"
    assert (tmp_path / "rte/plain/seed2/train.log").read_text() == ""
    assert (tmp_path / "rte/plain/seed1/checkpoint-4").is_dir()  # save_model: true keeps it


def test_a_killed_sweep_run_resumes_to_the_uninterrupted_result(
    tiny_model: str,
    glue_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def sweep(runs: Path, *extra: str) -> list[str]:
        options = {
            "model_name_or_path": tiny_model, "data_dir": glue_dir, "max_seq_length": 32,
            "num_train_epochs": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
            "logging_steps": 1, "save_strategy": "steps", "save_steps": 4, "save_model": "false",
        }  # fmt: skip
        sets = [arg for key, value in options.items() for arg in ("--set", f"{key}={value}")]
        return ["sweep", "--runs_dir", str(runs), "--tasks", "rte", "--methods", "smart",
                "--seeds", "1", *sets, *extra]  # fmt: skip

    def record(runs: Path) -> tuple[list[dict[str, object]], dict[str, object]]:
        folder = runs / "rte/smart/seed1"
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        events = [
            {k: v for k, v in json.loads(line).items() if k != "step_time_s"} for line in lines
        ]
        results = json.loads((folder / "all_results.json").read_text())
        return events, {k: v for k, v in results.items() if k.startswith("eval_")}

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert cli(sweep(reference), capsys)[0] == 0
    monkeypatch.setenv("SMARTFT_KILL_AT", "update:7")
    code, out, _ = cli(sweep(killed), capsys)
    assert code != 0 and "FAILED" in out
    assert (killed / "rte/smart/seed1/checkpoint-4").is_dir()
    monkeypatch.delenv("SMARTFT_KILL_AT")
    assert "(resumes from checkpoint-4)" in cli(sweep(killed, "--dry_run"), capsys)[1]
    code, out, err = cli(sweep(killed), capsys)
    assert code == 0 and "(resumed from checkpoint-4)" in out, out + err
    assert record(killed) == record(reference)
    for runs in (reference, killed):  # save_model: false keeps no checkpoint once finished
        assert not list((runs / "rte/smart/seed1").glob("*checkpoint-*"))


def sweep_script(tmp_path: Path, child: str, build_args: str) -> Path:
    """A Python script running a sweep of plain runs whose `python -m smartft.cli train ...`
    children are the shell script `child` (its arguments: the train command line)."""
    fake_python = tmp_path / "fake-python"
    fake_python.write_text("#!/bin/sh\n" + child)
    fake_python.chmod(0o755)
    script = tmp_path / "sweep.py"
    script.write_text(
        "import sys\n"
        "from smartft.sweep import build, expand, run_all\n"
        f"sys.executable = {str(fake_python)!r}\n"
        f"sweep = build({{}}, runs_dir={str(tmp_path / 'runs')!r}, methods='plain', {build_args})\n"
        "sys.exit(run_all(sweep, expand(sweep)))\n"
    )
    return script


def test_stopping_the_sweep_stops_its_training_child(tmp_path: Path) -> None:
    """SIGTERM reaches only the sweep process; its `smartft train` child must not train on."""
    pid_file = tmp_path / "child.pid"
    script = sweep_script(tmp_path, f"echo $$ > {pid_file}\nexec sleep 60\n", "tasks='rte'")
    sweep = subprocess.Popen([sys.executable, str(script)])
    child = 0
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text().strip()):
            assert sweep.poll() is None and time.monotonic() < deadline, "child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        sweep.terminate()
        assert sweep.wait(timeout=30) == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
        child = 0
    finally:
        sweep.kill()
        if child:
            os.kill(child, signal.SIGKILL)


def test_a_sweep_stopped_while_its_child_starts_stops_the_child(tmp_path: Path) -> None:
    """The SIGTERM handler used to be installed after the child had started: a SIGTERM in between
    killed the sweep by default and left its child training (make test caught it under load)."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "stop_at_start.py"
    script.write_text(
        "import os, signal, subprocess, sys\n"
        "from smartft import sweep\n"
        "start = subprocess.Popen\n"
        "def starting(*args, **kwargs):\n"
        "    child = start(*args, **kwargs)\n"
        f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # stopped while the child starts\n"
        "    return child\n"
        "subprocess.Popen = starting\n"
        "sys.exit(sweep.run_child(['sleep', '60'], open(os.devnull, 'w')))\n"
    )
    code = subprocess.run([sys.executable, str(script)], timeout=60).returncode
    child = int(pid_file.read_text())
    try:
        assert code == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def fake_run(root: Path, task: str, variant: str, seed: int, value: float) -> None:
    folder = root / task / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "sweep.yaml").write_text(
        yaml.safe_dump({"task": task, "variant": variant, "seed": seed})
    )
    (folder / "all_results.json").write_text(
        json.dumps(
            {
                "task": task,
                "method": variant,
                "seed": seed,
                "main_metric": "accuracy",
                "eval_accuracy": value,
                "train_runtime_s": 60.0,
            }
        )
    )
    (folder / "metrics.jsonl").write_text(
        json.dumps({"event": "train", "step": 1, "task_loss": 0.7})
        + "\n"
        + json.dumps({"event": "eval", "step": 1, "eval_accuracy": value})
        + "\n"
    )


def test_report_statistics_on_hand_made_results(tmp_path: Path) -> None:
    plain = [0.60, 0.50, 0.70, 0.55, 0.65]
    smart = [0.62, 0.53, 0.74, 0.58, 0.66]  # better on every seed
    for seed, (p, s) in enumerate(zip(plain, smart, strict=True), start=1):
        fake_run(tmp_path, "rte", "plain", seed, p)
        fake_run(tmp_path, "rte", "smart", seed, s)
    cells = {c.variant: c for c in summarize(collect(tmp_path))}
    assert cells["plain"].median == 0.60 and cells["smart"].median == 0.62
    assert cells["plain"].std == pytest.approx(statistics.stdev(plain))
    assert (cells["plain"].min, cells["plain"].max) == (0.50, 0.70)
    assert cells["smart"].diff_median == pytest.approx(0.02)
    assert cells["smart"].diff_mean_paired == pytest.approx(0.026)
    assert cells["smart"].p_sign_flip == pytest.approx(2 / 32)  # 5 positive pairs, exact test
    diffs = [s - p for p, s in zip(plain, smart, strict=True)]  # t-interval by hand: t(4) = 2.776
    half = 2.7764451 * statistics.stdev(diffs) / math.sqrt(5)
    assert (cells["smart"].ci_low, cells["smart"].ci_high) == pytest.approx(
        (0.026 - half, 0.026 + half)
    )
    detectable = (2.7764451 + 0.9409646) * statistics.stdev(diffs) / math.sqrt(5)
    assert cells["smart"].detectable == pytest.approx(detectable)
    assert verdict(cells["smart"]) == "better"
    table = markdown(list(cells.values()))
    assert "| smart | 5 | 0.6200 |" in table and "better" in table
    two = tmp_path / "two"
    for seed in (1, 2):
        fake_run(two, "rte", "plain", seed, plain[seed - 1])
        fake_run(two, "rte", "smart", seed, smart[seed - 1])
    cells = {c.variant: c for c in summarize(collect(two))}
    assert cells["smart"].paired_seeds == 2
    assert verdict(cells["smart"]) == "too few seeds"


def test_runs_table_marks_a_resumed_runs_partial_wall_time(tmp_path: Path) -> None:
    fake_run(tmp_path, "rte", "plain", 1, 0.6)
    fake_run(tmp_path, "rte", "plain", 2, 0.7)
    resumed = tmp_path / "rte" / "plain" / "seed2" / "all_results.json"
    results = json.loads(resumed.read_text())
    resumed.write_text(json.dumps({**results, "resumed_from": "x/seed2/checkpoint-388"}))
    fake_run(tmp_path, "rte", "plain", 3, 0.8)  # resumed, its earlier part's time recorded
    whole = tmp_path / "rte" / "plain" / "seed3" / "all_results.json"
    results = json.loads(whole.read_text())
    resumed_from = {"resumed_from": "x/seed3/checkpoint-8", "train_runtime_before_resume_s": 30.0}
    whole.write_text(json.dumps({**results, **resumed_from}))
    rows = runs_table(collect(tmp_path), tmp_path).splitlines()
    assert rows[0] == "| run | score | wall time (train) | median step |"
    assert rows[2].startswith("| rte/plain/seed1 | accuracy 0.6000 | 1.0 min | ")
    assert rows[3].startswith(
        "| rte/plain/seed2 | accuracy 0.7000 | 1.0 min (after resuming from checkpoint-388) | "
    )
    assert rows[4].startswith("| rte/plain/seed3 | accuracy 0.8000 | 1.0 min | ")


def test_median_run_time_leaves_out_runs_whose_whole_time_is_unknown(tmp_path: Path) -> None:
    """A run resumed by code that did not record the time before its resume knows only its last
    part: counting it understated a method's median run time (FreeLB's RTE runs, all resumed,
    read 43 min)."""
    for seed, runtime, extra in (
        (1, 60.0, {}),
        (2, 10.0, {"resumed_from": "x/checkpoint-8"}),  # only the part after the resume
        (3, 120.0, {"resumed_from": "x/checkpoint-8", "train_runtime_before_resume_s": 90.0}),
    ):
        fake_run(tmp_path, "rte", "plain", seed, 0.6)
        fake_run(tmp_path, "rte", "freelb", seed, 0.5)
        for variant in ("plain", "freelb"):
            path = tmp_path / "rte" / variant / f"seed{seed}" / "all_results.json"
            results = {**json.loads(path.read_text()), "train_runtime_s": runtime}
            if variant == "plain" or seed == 2:
                results.update(extra)
            else:
                results.update({"resumed_from": "x/checkpoint-4"})  # every seed resumed
            path.write_text(json.dumps(results))
    cells = {c.variant: c for c in summarize(collect(tmp_path))}
    assert cells["plain"].runtime_s == 90.0  # seeds 1 and 3; seed 2's 10 s is a part
    assert math.isnan(cells["freelb"].runtime_s)
    text = markdown(list(cells.values()))
    assert "|  | 1.5 min |" in text and "| worse | – |" in text


def test_report_joins_several_runs_folders(tmp_path: Path) -> None:
    """New methods' runs reported against an earlier study's plain runs, paired by seed."""
    study, methods = tmp_path / "study", tmp_path / "methods"
    for seed, value in ((1, 0.60), (2, 0.50), (3, 0.70)):
        fake_run(study, "rte", "plain", seed, value)
        fake_run(study, "rte", "smart-unit", seed, 0.0)  # in the study, not asked for
        fake_run(methods, "rte", "r3f", seed, value + 0.01 * seed)
    text, files = report([methods, study / "rte" / "plain"], tmp_path / "out", plots=False)
    cells = {c.variant: c for c in summarize(collect_many([methods, study / "rte" / "plain"]))}
    assert set(cells) == {"plain", "r3f"}
    assert cells["r3f"].paired_seeds == 3
    assert cells["r3f"].diff_mean_paired == pytest.approx(0.02)
    assert "| r3f | 3 |" in text and files[0] == tmp_path / "out" / "report.md"
    with pytest.raises(ConfigError, match="same run"):
        collect_many([study, study / "rte" / "plain"])
    with pytest.raises(ConfigError, match="not a folder"):
        report([methods, tmp_path / "missing"])


def null_study(diffs: list[float]) -> str:
    """The verdict `smartft report` gives a study whose paired differences are `diffs`."""
    records = []
    for seed, diff in enumerate(diffs, start=1):
        records.append(Record(Path("."), "t", "plain", seed, "", "accuracy", 0.5, 1.0))
        records.append(Record(Path("."), "t", "smart", seed, "", "accuracy", 0.5 + diff, 1.0))
    cell = next(c for c in summarize(records) if c.variant == "smart")
    return verdict(cell)


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("tails", ["normal", "heavy"])
def test_with_no_true_difference_a_verdict_is_better_or_worse_at_most_5_percent_of_the_time(
    n: int, tails: str
) -> None:
    """10,000 simulated studies whose methods do not differ. The percentile bootstrap this
    replaced called 25 % of them better or worse at 3 seeds, 17 % at 5 and 10 % at 10."""
    rng = np.random.default_rng(n)
    studies = 10_000
    if tails == "normal":
        draws = rng.normal(0.0, 0.01, size=(studies, n))
    else:  # Student's t with 3 degrees of freedom: outlying seeds are common
        draws = rng.standard_t(3, size=(studies, n)) * 0.01
    wrong = sum(null_study(list(d)) in ("better", "worse") for d in draws)
    assert wrong / studies <= 0.06


def test_a_real_difference_is_found_and_a_tie_says_what_it_rules_out() -> None:
    assert null_study([0.004, 0.006, -0.001, 0.010, 0.002]) == "tie"  # was "better"
    assert null_study([0.02, 0.03, 0.025, 0.021, 0.028]) == "better"
    found = compare([0.004, 0.006, -0.001, 0.010, 0.002])
    assert found.ci_low == pytest.approx(-0.0009, abs=1e-4)
    assert found.ci_high == pytest.approx(0.0093, abs=1e-4)
    assert found.detectable > found.ci_high - found.mean  # a tie is no proof of equality
    assert compare([0.01, 0.02]).verdict == "too few seeds"


def test_a_run_chosen_on_dev_is_read_at_the_end_of_its_budget(tmp_path: Path) -> None:
    """load_best_model_at_end on dev reports the best epoch; the report reads the last one."""
    fake_run(tmp_path, "rte", "plain", 1, 0.70)  # best epoch 0.70, last epoch 0.60
    folder = tmp_path / "rte" / "plain" / "seed1"
    results = json.loads((folder / "all_results.json").read_text())
    results.update({"train_steps": 20, "best_step": 10, "eval_split": "validation"})
    (folder / "all_results.json").write_text(json.dumps(results))
    evals = [{"event": "eval", "step": s, "eval_accuracy": v} for s, v in ((10, 0.7), (20, 0.6))]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    (record,) = collect(tmp_path)
    assert record.value == 0.60 and not record.dev_selected
    (folder / "metrics.jsonl").unlink()  # a bare record: the best epoch, marked
    (record,) = collect(tmp_path)
    assert record.value == 0.70 and record.dev_selected
    cells = summarize([record])
    assert "| plain\\* |" in markdown(cells) and "best epoch on dev" in markdown(cells)
    held_out = {**results, "eval_split": "holdout"}  # chosen on training data: kept as chosen
    (folder / "all_results.json").write_text(json.dumps(held_out))
    (record,) = collect(tmp_path)
    assert record.value == 0.70 and not record.dev_selected


def test_report_on_run_folders_holding_only_all_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for seed in (1, 2, 3):
        for variant, value in (("plain", 0.5), ("smart", 0.6)):
            fake_run(tmp_path, "rte", variant, seed, value + 0.01 * seed)
            folder = tmp_path / "rte" / variant / f"seed{seed}"
            (folder / "metrics.jsonl").unlink()
            (folder / "sweep.yaml").unlink()
    code, out, err = cli(["report", str(tmp_path)], capsys)
    assert code == 0, err
    assert "| smart | 3 |" in out and "better" in out and "Traceback" not in err


def test_report_handles_a_single_seed_and_nan(tmp_path: Path) -> None:
    fake_run(tmp_path, "stsb", "plain", 1, math.nan)
    (cell,) = summarize(collect(tmp_path))
    assert math.isnan(cell.median) and math.isnan(cell.std)
    assert "–" in markdown([cell])


def test_tiny_sweep_end_to_end(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    args = [
        "sweep",
        "--runs_dir",
        str(runs),
        "--tasks",
        "rte",
        "--methods",
        "plain,smart",
        "--seeds",
        "1,2",
        "--set",
        f"model_name_or_path={tiny_model}",
        "--set",
        f"data_dir={glue_dir}",
        "--set",
        "max_seq_length=32",
        "--set",
        "num_train_epochs=1",
        "--set",
        "per_device_train_batch_size=16",
        "--set",
        "learning_rate=1e-3",
    ]
    code, out, err = cli(args, capsys)
    assert code == 0, out + err
    assert out.count("done in") == 4 and "ETA" in out
    assert cli(args, capsys)[1].count("4 already finished") == 1
    code, out, _ = cli(["report", str(runs)], capsys)
    assert code == 0 and "| smart | 2 |" in out
    assert {p.name for p in runs.glob("*.png")} == {"rte-seeds.png", "rte-curves.png"}
    summary = json.loads((runs / "report.json").read_text())
    assert {c["variant"] for c in summary} == {"plain", "smart"}


def test_sub_grids_with_their_own_variants_and_seeds() -> None:
    data = {
        "variants": {
            "plain": {"method": "plain"},
            "smart": {"method": "smart"},
            "smart-unit": {"method": "smart", "smart_projection": "unit"},
        },
        "grid": [
            {"seed": [1, 2], "task_name": ["rte"]},
            {"seed": [1], "task_name": ["mrpc"], "variants": ["plain", "smart"]},
            {"seed": [1, 2], "task_name": ["rte"], "variants": ["plain"]},
        ],
    }
    names = [r.name for r in expand(build(data, runs_dir="r"))]
    assert names == [
        "rte/plain/seed1",
        "rte/smart/seed1",
        "rte/smart-unit/seed1",
        "rte/plain/seed2",
        "rte/smart/seed2",
        "rte/smart-unit/seed2",
        "mrpc/plain/seed1",
        "mrpc/smart/seed1",
    ]  # the repeated rte/plain runs once
    with pytest.raises(ConfigError, match="unknown variant"):
        build({"grid": {"task_name": ["rte"], "variants": ["nope"]}}, runs_dir="r")


def test_option_values_may_name_the_runs_own_task_seed_and_variant() -> None:
    data = {
        "base": {"data_dir": "d"},
        "variants": {
            "mt-ft": {"model_name_or_path": "runs/mt/{variant}/seed{seed}"},
            "kd": {"teachers": "t/{task_name}/s11,t/{task_name}/s12"},
        },
        "grid": {"task_name": ["rte", "mrpc"], "seed": [1, 2]},
    }
    runs = {r.name: r.options for r in expand(build(data, runs_dir="r"))}
    assert runs["mrpc/mt-ft/seed2"]["model_name_or_path"] == "runs/mt/mt-ft/seed2"
    assert runs["rte/kd/seed1"]["teachers"] == "t/rte/s11,t/rte/s12"
    assert runs["rte/kd/seed1"]["data_dir"] == "d"  # text without placeholders is kept


def test_tasks_flag_chooses_among_a_grids_per_task_rows() -> None:
    """A study's final grid has one row per task with that task's chosen settings: `--tasks rte`
    must run RTE's row only, not every row's settings on RTE (which it did)."""
    data = {
        "variants": {"plain": {"method": "plain"}},
        "grid": [
            {"task_name": ["rte"], "seed": [1], "learning_rate": [5e-5]},
            {"task_name": ["stsb"], "seed": [1], "learning_rate": [1e-4]},
            {"task_name": ["rte", "cola"], "seed": [2]},
        ],
    }
    names = [r.name for r in expand(build(data, runs_dir="r", tasks="rte"))]
    assert names == ["rte/learning_rate=5e-05/plain/seed1", "rte/plain/seed2"]
    assert [r.name for r in expand(build(data, runs_dir="r", tasks="cola,stsb"))] == [
        "stsb/learning_rate=0.0001/plain/seed1",
        "cola/plain/seed2",
    ]
    with pytest.raises(ConfigError, match=r"--tasks mrpc: .* names only cola, rte, stsb"):
        build(data, runs_dir="r", tasks="rte,mrpc")
    replaced = expand(build(data, runs_dir="r", grids=["task_name=mrpc"]))
    assert {r.axes["task"] for r in replaced} == {"mrpc"}
    # a grid that names no task runs the given ones
    assert [r.name for r in expand(build({"grid": {"seed": [1]}}, runs_dir="r", tasks="rte"))] == [
        "rte/plain/seed1"
    ]


def test_variants_flag_chooses_among_the_files_variants() -> None:
    """A study's final grid runs its headline variants first with `--variants plain,smart`; the
    runs keep the folders (and options) the whole grid gives them, so the rest fills in later."""
    data = {
        "variants": {
            "plain": {"method": "plain"},
            "smart": {"method": "smart"},
            "smart-fast": {"method": "smart", "smart_fraction": 0.25},
        },
        "grid": [
            {"task_name": ["rte"], "seed": [1], "variants": ["plain"], "learning_rate": [5e-5]},
            {"task_name": ["rte"], "seed": [1], "variants": ["smart-fast", "smart"]},
            {"task_name": ["rte"], "seed": [2], "variants": ["smart-fast"]},
            {"task_name": ["mrpc"], "seed": [1]},
        ],
    }
    whole = {r.name: r.options for r in expand(build(data, runs_dir="r"))}
    chosen = expand(build(data, runs_dir="r", only_variants="smart,plain"))
    assert [r.name for r in chosen] == [
        "rte/learning_rate=5e-05/plain/seed1",
        "rte/smart/seed1",
        "mrpc/plain/seed1",
        "mrpc/smart/seed1",
    ]
    assert all(whole[r.name] == r.options for r in chosen)
    with pytest.raises(ConfigError, match=r"--variants smart-slow: .* defines only plain, smart,"):
        build(data, runs_dir="r", only_variants="smart,smart-slow")
    with pytest.raises(ConfigError, match=r"--methods .* or --variants"):
        build(data, runs_dir="r", methods="plain", only_variants="plain")


def test_a_run_another_sweep_holds_or_has_finished_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = build({}, runs_dir=str(tmp_path), tasks="rte", methods="plain", seeds="1,2,3")
    runs = expand(sweep)
    calls: list[str] = []

    def fake_call(cmd: list[str], log: object) -> int:
        folder = Path(cmd[cmd.index("--output_dir") + 1])
        calls.append(folder.name)
        (folder / "all_results.json").write_text("{}")
        if folder.name == "seed2":  # meanwhile another sweep finishes seed3
            (tmp_path / "rte/plain/seed3").mkdir(parents=True)
            (tmp_path / "rte/plain/seed3/all_results.json").write_text("{}")
        return 0

    monkeypatch.setattr("smartft.sweep.run_child", fake_call)
    assert run_all(sweep, runs, dry_run=True) == 0
    assert not (tmp_path / ".locks").exists()  # a dry run writes nothing
    with claim(tmp_path, "rte/plain/seed1") as free:  # another sweep is running seed1
        assert free
        assert run_all(sweep, runs, dry_run=True) == 0
        assert "rte/plain/seed1 (another sweep is running it)" in capsys.readouterr().out
        assert run_all(sweep, runs) == 0
    assert calls == ["seed2"]
    out = capsys.readouterr().out
    assert "seed1: another sweep has taken it" in out and "seed3: another sweep has taken it" in out
    assert run_all(sweep, runs) == 0 and calls == ["seed2", "seed1"]  # released: seed1 runs


def test_concurrent_sweeps_over_one_grid_run_each_run_once(tmp_path: Path) -> None:
    """Two sweep processes over the same six runs (as on a machine with a core or a GPU process
    per sweep): every run trains exactly once, and together they finish the grid."""
    starts = tmp_path / "starts.log"
    child = (
        'while [ "$1" != --output_dir ]; do shift; done\n'
        f'echo "$2" >> {starts}\n'
        "sleep 0.3\n"
        "echo '{}' > \"$2/all_results.json\"\n"
    )
    script = sweep_script(tmp_path, child, "tasks='rte,mrpc', seeds='1,2,3'")
    sweeps = [subprocess.Popen([sys.executable, str(script)]) for _ in range(2)]
    try:
        assert [s.wait(timeout=120) for s in sweeps] == [0, 0]
    finally:
        for s in sweeps:
            s.kill()
    started = starts.read_text().split()
    assert len(started) == 6 and len(set(started)) == 6
    assert len(list((tmp_path / "runs").glob("*/plain/seed*/all_results.json"))) == 6


def test_a_run_waits_for_the_model_it_starts_from_and_a_missing_one_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fine-tune waits for the multi-task run whose model it starts from; in a fresh clone,
    which holds that run's records but not its weights, the run is made again first."""
    monkeypatch.chdir(tmp_path)
    data = {
        "base": {"data_dir": "d"},
        "variants": {
            "mt": {},
            "ft": {"model_name_or_path": "runs/rte/mt/seed{seed}", "save_model": False},
        },
        "grid": [
            {"task_name": ["mrpc"], "seed": [1], "variants": ["ft"]},  # listed first on purpose
            {"task_name": ["rte"], "seed": [1], "variants": ["mt"]},
        ],
    }
    sweep = build(data, runs_dir="runs")
    runs = expand(sweep)
    calls: list[str] = []
    fail = {"rte/mt/seed1": False}

    def fake_call(cmd: list[str], log: object) -> int:
        folder = Path(cmd[cmd.index("--output_dir") + 1])
        name = folder.relative_to("runs").as_posix()
        calls.append(name)
        if fail.get(name):
            return 1
        (folder / "all_results.json").write_text("{}")
        if "ft" not in name:
            (folder / "model.safetensors").write_text("weights")
        return 0

    monkeypatch.setattr("smartft.sweep.run_child", fake_call)
    fail["rte/mt/seed1"] = True  # the model it needs is never saved: it waits, it does not fail
    assert run_all(sweep, runs) == 1 and calls == ["rte/mt/seed1"]
    assert "mrpc/ft/seed1: waits for the saved model of rte/mt/seed1" in capsys.readouterr().out
    fail["rte/mt/seed1"] = False  # and the run it needs goes first, whatever the grid's order
    assert run_all(sweep, runs) == 0 and calls[1:] == ["rte/mt/seed1", "mrpc/ft/seed1"]
    calls.clear()

    # a fresh clone: the records, no weights; the fine-tune is not finished, so mt runs again
    (tmp_path / "runs/rte/mt/seed1/model.safetensors").unlink()
    (tmp_path / "runs/mrpc/ft/seed1/all_results.json").unlink()
    assert run_all(sweep, runs, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "1 again" in out and "rte/mt/seed1 (again: its saved model is not here)" in out
    assert "mrpc/ft/seed1 (after rte/mt/seed1)" in out
    assert run_all(sweep, runs) == 0 and calls == ["rte/mt/seed1", "mrpc/ft/seed1"]
    calls.clear()

    # every run that needs it is finished: a missing model is not made again
    (tmp_path / "runs/rte/mt/seed1/model.safetensors").unlink()
    assert run_all(sweep, runs) == 0 and calls == []

    data["variants"]["mt"] = {"save_model": False}  # type: ignore[index]
    with pytest.raises(ConfigError, match="needs the model of rte/mt/seed1, which saves none"):
        run_all(build(data, runs_dir="runs"), expand(build(data, runs_dir="runs")))
    data["variants"]["mt"] = {"model_name_or_path": "runs/rte/mt/seed{seed}"}  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"models: rte/mt/seed1 -> rte/mt/seed1$"):
        run_all(build(data, runs_dir="runs"), expand(build(data, runs_dir="runs")))


def test_report_gives_out_of_distribution_scores_the_same_paired_statistics(
    tmp_path: Path,
) -> None:
    for seed in (1, 2, 3, 4):
        for variant, shift in (("plain", 0.0), ("smart", 0.05)):
            fake_run(tmp_path, "mrpc", variant, seed, 0.8)
            path = tmp_path / "mrpc" / variant / f"seed{seed}" / "all_results.json"
            results = json.loads(path.read_text())
            results.update({"ood_paws_accuracy": 0.45 + shift + 0.001 * seed, "ood_paws_f1": 0.1})
            path.write_text(json.dumps(results))
    text, _ = report(tmp_path, tmp_path / "out", plots=False)
    assert "## Out of distribution" in text and "### mrpc → paws: accuracy" in text
    shifted = text[text.index("mrpc → paws") :]
    assert "| smart | 4 | 0.5025 |" in shifted and "better" in shifted
    assert "ood_paws_f1" not in text  # each set's main metric


def test_out_of_distribution_scores_of_weights_chosen_on_dev_are_marked(tmp_path: Path) -> None:
    """--ood_tasks scores the weights a run kept; with its best epoch on dev that is a figure
    dev chose, even though the dev column is read at the last evaluation."""
    fake_run(tmp_path, "mrpc", "plain", 1, 0.8)
    folder = tmp_path / "mrpc" / "plain" / "seed1"
    results = json.loads((folder / "all_results.json").read_text())
    results.update({"ood_paws_accuracy": 0.45, "checkpoint_chosen_on": "dev", "train_steps": 1})
    (folder / "all_results.json").write_text(json.dumps(results))
    (record,) = collect(tmp_path)
    assert not record.dev_selected  # dev itself is read at the last evaluation
    (shifted,) = ood_records([record])
    assert shifted.dev_selected and shifted.task == "mrpc → paws" and shifted.value == 0.45
    results["checkpoint_chosen_on"] = "end"
    (folder / "all_results.json").write_text(json.dumps(results))
    assert not ood_records(collect(tmp_path))[0].dev_selected


def test_report_flags_methods_that_answer_one_label(tmp_path: Path) -> None:
    """PAWS's trap, as the SMART study met it: MRPC models that call nearly every PAWS pair a
    paraphrase score near the constant predictor, and the report says so under the table."""
    for seed in (1, 2, 3):
        for variant, share in (("plain", 0.99), ("smart", 0.80)):
            fake_run(tmp_path, "mrpc", variant, seed, 0.8)
            path = tmp_path / "mrpc" / variant / f"seed{seed}" / "all_results.json"
            results = json.loads(path.read_text())
            results.update(
                {
                    "eval_top_prediction_share": 0.7,
                    "eval_majority_baseline": 0.68,
                    "ood_paws_accuracy": 0.45,
                    "ood_paws_top_prediction_share": share,
                    "ood_paws_majority_baseline": 0.558,
                }
            )
            path.write_text(json.dumps(results))
    records = collect(tmp_path)
    assert {(r.top_share, r.majority) for r in records} == {(0.7, 0.68)}
    text, _ = report(tmp_path, tmp_path / "out", plots=False)
    dev, shifted = text.split("## Out of distribution")
    assert "one label" not in dev
    assert "- mrpc → paws, `plain`: 99.0% of answers are one label" in shifted
    assert "scores accuracy 0.5580 here" in shifted and "`smart`:" not in shifted
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {c["variant"]: c["top_share"] for c in summary if "→" in c["task"]} == {
        "plain": 0.99,
        "smart": 0.8,
    }


def smart_against_plain(task: str, smart: list[float]) -> Cell:
    """The SMART cell of a task whose plain runs scored 0.5, 0.6, 0.55 on seeds 1-3."""
    records = [
        Record(Path("."), task, variant, seed, "", "accuracy", value, 60.0)
        for variant, values in (("plain", [0.5, 0.6, 0.55]), ("smart", smart))
        for seed, value in enumerate(values, start=1)
    ]
    (found,) = [c for c in summarize(records) if c.variant == "smart"]
    return found


def test_tally_names_pairs_too_few_for_a_verdict() -> None:
    """One or two pairs carry no verdict; the words say so instead of "0, 0 and 0"."""
    named = [
        ("RTE", smart_against_plain("rte", [0.6, 0.7, 0.65])),  # +0.1 on every seed: better
        ("MRPC", smart_against_plain("mrpc", [0.52])),  # one pair
        ("CoLA", smart_against_plain("cola", [0.52, 0.6])),  # two pairs
    ]
    assert tally(named) == (
        "better on 1 (RTE), tie on 0, worse on 0, too few pairs yet on 2 (MRPC, CoLA)"
    )
    assert tally(named[:1]) == "better on 1 (RTE), tie on 0, worse on 0"


def test_versus_text_shows_a_single_pair_as_run() -> None:
    """A variant with one pair has run: its cell gives the difference and says no interval exists
    yet, where the old tables said "not run yet"; from two pairs on it gives the interval."""
    one = smart_against_plain("rte", [0.52])
    assert versus_text(None, "not run yet") == "not run yet"
    assert versus_text(one, "not run yet") == "+0.0200 (1 pair: no interval yet)"
    three = smart_against_plain("rte", [0.6, 0.7, 0.65])
    assert versus_text(three, "-") == "+0.1000 [+0.1000, +0.1000] better (3)"
    assert versus_text(three, "-", with_detectable=True).endswith(
        "better (3 seeds; detectable 0.0000)"
    )
