"""`smartft tune` on the tiny model: one worker (held-out scores only, best.yaml trains, the
report), pruning in the trial records, the final seeds, two workers sharing a SQLite file, and
two workers on a real PostgreSQL server this test starts from the machine's binaries."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from smartft.errors import ConfigError
from smartft.tune import Param, parse_param, search_space

from .conftest import write_rte
from .test_engine import cli

optuna = pytest.importorskip("optuna", reason="smartft tune needs the tune extra (optuna)")

SEARCH = "'*': {num_train_epochs: [1, 2], learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}}\n"


def tune_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "tune", "--output_dir", str(out), "--model_name_or_path", model, "--task_name", "rte",
        "--data_dir", str(data), "--max_seq_length", "32", "--per_device_train_batch_size", "8",
        "--holdout_fraction", "0.25", "--search", str(out.parent / "search.yaml"), *extra,
    ]  # fmt: skip


@pytest.fixture
def rte(tmp_path: Path) -> Path:
    write_rte(tmp_path / "glue" / "RTE", n_train=48, n_dev=16)
    (tmp_path / "search.yaml").write_text(SEARCH, encoding="utf-8")
    return tmp_path / "glue"


def trials(storage: str, name: str) -> list[object]:
    study = optuna.load_study(study_name=name, storage=storage)
    return list(study.get_trials(deepcopy=False))


def test_search_space_defaults_and_yaml_overrides(tmp_path: Path) -> None:
    space = search_space(["plain", "smart"], None)
    assert set(space["plain"]) == {"learning_rate", "num_train_epochs"}
    assert space["smart"]["smart_lambda"] == Param(0.3, 10.0, log=True)
    path = tmp_path / "s.yaml"
    path.write_text("smart: {smart_lambda: [1, 3]}\n'*': {num_train_epochs: {low: 2, high: 4}}\n")
    space = search_space(["plain", "smart"], str(path))
    assert space["smart"]["smart_lambda"].choices == (1, 3)
    assert space["plain"]["num_train_epochs"] == Param(2, 4, integer=True)
    assert parse_param("x", 0.5).choices == (0.5,)
    path.write_text("r3f: {r3f_lambda: [1]}\n")
    with pytest.raises(ConfigError, match="'r3f' is not one of --methods"):
        search_space(["plain"], str(path))
    path.write_text("'*': {holdout_fraction: [0.5]}\n")
    with pytest.raises(ConfigError, match="belongs to the protocol"):
        search_space(["plain"], str(path))


def test_one_worker_searches_on_held_out_data_and_best_yaml_trains(
    tiny_model: str, rte: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tune"
    args = tune_args(tiny_model, rte, out, "--methods", "plain,smart", "--n_trials", "3",
                     "--pruner", "none", "--sampler_seed", "0")  # fmt: skip
    code, text, err = cli(args, capsys)
    assert code == 0, err
    assert "tune: trial 2 (" in text and "; best so far " in text  # a line per trial
    summary = json.loads(text[text.index("\n{") :])
    assert summary["best_method"] in ("plain", "smart")
    found = trials(f"sqlite:///{out / 'study.db'}", "tune")
    assert [t.state.name for t in found] == ["COMPLETE"] * 3  # type: ignore[attr-defined]
    for folder in sorted((out / "trials").iterdir()):
        results = json.loads((folder / "all_results.json").read_text())
        assert results["eval_split"] == "holdout" and results["eval_examples"] == 12
        assert not any(k.startswith("dev_") for k in results)  # dev never read
    report = (out / "tune-report.md").read_text()
    assert "## Best per method" in report and report.count("| COMPLETE |") == 3
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["method"] == summary["best_method"] and "holdout_fraction" not in best
    final = tmp_path / "from-best"
    code, _, err = cli(["train", "--config", str(out / "best.yaml"), "--output_dir", str(final)],
                       capsys)  # fmt: skip
    assert code == 0, err
    trained = json.loads((final / "all_results.json").read_text())
    assert trained["method"] == best["method"] and trained["eval_examples"] == 16  # dev


def test_pruned_trials_are_recorded_as_pruned(
    tiny_model: str, rte: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A threshold no held-out accuracy reaches: every trial stops at its first evaluation,
    the storage and the report say PRUNED, and there is no winner to write."""
    out = tmp_path / "tune"
    args = tune_args(tiny_model, rte, out, "--methods", "plain", "--n_trials", "2",
                     "--pruner", "threshold", "--prune_below", "1.01")  # fmt: skip
    code, _, err = cli(args, capsys)
    assert code != 0 and "no trial has completed yet" in err
    found = trials(f"sqlite:///{out / 'study.db'}", "tune")
    assert [t.state.name for t in found] == ["PRUNED", "PRUNED"]  # type: ignore[attr-defined]
    assert (out / "tune-report.md").read_text().count("| PRUNED |") == 2
    events = [json.loads(line) for line in (out / "trials" / "trial-0000" / "metrics.jsonl").open()]
    assert events[-1]["event"] == "pruned" and not (out / "best.yaml").exists()


def test_final_seeds_train_the_winner_and_plain_and_report_the_pairs(
    tiny_model: str, rte: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tune"
    args = tune_args(tiny_model, rte, out, "--methods", "plain,r3f", "--n_trials", "3",
                     "--pruner", "none", "--sampler_seed", "1")  # fmt: skip
    assert cli(args, capsys)[0] == 0
    code, _, err = cli([*args[:-6], "--n_trials", "0", "--final_seeds", "1,2"], capsys)
    assert code == 0, err
    winner = yaml.safe_load((out / "best.yaml").read_text())["method"]
    runs = sorted(p.parent.relative_to(out / "final").as_posix()
                  for p in (out / "final").rglob("all_results.json"))  # fmt: skip
    expected = sorted({f"{m}/seed{s}" for m in ("plain", winner) for s in (1, 2)})
    assert runs == expected
    assert "### rte" in (out / "final.md").read_text()


def test_a_failing_trial_is_recorded_with_its_reason_and_the_study_goes_on(
    tiny_model: str, rte: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """R3F's trials get a radius the option check refuses: they fail (FAIL, with the reason
    in the report), plain's trials complete, and the best is plain."""
    (tmp_path / "search.yaml").write_text(SEARCH + "r3f: {r3f_eps: -1.0}\n", encoding="utf-8")
    out = tmp_path / "tune"
    args = tune_args(tiny_model, rte, out, "--methods", "plain,r3f", "--n_trials", "2",
                     "--pruner", "none")  # fmt: skip
    code, _, err = cli(args, capsys)
    assert code == 0, err
    states = {
        t.params["method"]: t.state.name for t in trials(f"sqlite:///{out / 'study.db'}", "tune")
    }  # type: ignore[attr-defined]
    assert states == {"plain": "COMPLETE", "r3f": "FAIL"}
    assert "| FAIL: ConfigError:" in (out / "tune-report.md").read_text()
    assert yaml.safe_load((out / "best.yaml").read_text())["method"] == "plain"


def test_final_seeds_need_plain_among_the_methods(
    tiny_model: str, rte: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = tune_args(tiny_model, rte, tmp_path / "t", "--methods", "smart", "--final_seeds", "1")
    code, _, err = cli(args, capsys)
    assert code != 0 and "add plain to --methods" in err


def start_workers(args: list[str], count: int) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "smartft.cli", *args]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    done = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(command, proc.returncode, stdout, stderr))
    return done


def check_shared_study(
    storage: str, name: str, workers: list[subprocess.CompletedProcess[str]]
) -> None:
    for worker in workers:
        assert worker.returncode == 0, worker.stderr[-3000:]
    found = trials(storage, name)
    assert sorted(t.number for t in found) == [0, 1, 2, 3]  # type: ignore[attr-defined]
    assert {t.state.name for t in found} == {"COMPLETE"}  # type: ignore[attr-defined]
    assert len({t.user_attrs["worker"] for t in found}) == 2  # type: ignore[attr-defined]


def test_two_workers_share_one_sqlite_study(tiny_model: str, rte: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    args = tune_args(tiny_model, rte, out, "--methods", "plain,smart", "--n_trials", "2",
                     "--pruner", "none")  # fmt: skip
    out.mkdir()
    workers = start_workers(args, 2)
    check_shared_study(f"sqlite:///{out / 'study.db'}", "tune", workers)
    assert "| COMPLETE |" in (out / "tune-report.md").read_text()


def test_a_worker_that_loses_the_sqlite_schema_race_joins_the_study(tmp_path: Path) -> None:
    """Two workers on a fresh SQLite file: the other one creates the `trials` table between
    this worker's existence check and its own CREATE TABLE (the CI failure "table trials already
    exists"). This worker must try again and join the study, not die."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from smartft.tune import open_study

    path = tmp_path / "study.db"
    raced: list[str] = []

    def the_other_worker_wins(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("CREATE TABLE trials") and not raced:
            raced.append(statement)
            other = sqlite3.connect(path)
            other.execute(statement)
            other.commit()
            other.close()

    event.listen(Engine, "before_cursor_execute", the_other_worker_wins)
    try:
        study = open_study("race", f"sqlite:///{path}", optuna.pruners.NopPruner(), seed=0)
    finally:
        event.remove(Engine, "before_cursor_execute", the_other_worker_wins)
    assert raced, "the schema was not created through CREATE TABLE trials"
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=1)
    assert len(trials(f"sqlite:///{path}", "race")) == 1


def test_a_killed_workers_trial_is_failed_and_the_study_carries_on(
    tiny_model: str, rte: Path, tmp_path: Path
) -> None:
    """A worker SIGKILLed in its trial leaves it RUNNING; the next worker, finding no heartbeat
    for longer than its grace period, marks it FAIL and runs the next trial."""
    out = tmp_path / "tune"
    args = tune_args(tiny_model, rte, out, "--methods", "plain,smart", "--n_trials", "1",
                     "--pruner", "none")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SMARTFT_TUNE_HEARTBEAT": "1"}
    command = [sys.executable, "-m", "smartft.cli", *args]
    killed = subprocess.run(command, env={**env, "SMARTFT_KILL_AT": "update:3"},
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    storage = f"sqlite:///{out / 'study.db'}"
    states = [t.state.name for t in trials(storage, "tune")]  # type: ignore[attr-defined]
    assert states == ["RUNNING", "WAITING"]  # the kill, and smart's queued first trial
    time.sleep(3)  # past the grace period of two heartbeats
    after = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert after.returncode == 0, after.stderr[-2000:]
    states = [t.state.name for t in trials(storage, "tune")]  # type: ignore[attr-defined]
    assert states == ["FAIL", "COMPLETE"]  # failed by the second worker, which went on


def postgres_binary(name: str) -> str | None:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    return found


@pytest.fixture
def postgres() -> Iterator[str]:
    """A real PostgreSQL server on a temporary folder and a free local port (as the `postgres`
    user when the tests run as root, which PostgreSQL refuses to be; the folder is directly
    under the system's temporary folder, where that user can reach it)."""
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb / pg_ctl are not installed")
    folder = Path(tempfile.mkdtemp(prefix="smartft-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    subprocess.run([*prefix, initdb, "-D", str(data), "-U", "smartft", "--auth=trust"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    start = [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w"]
    subprocess.run([*start, "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://smartft@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(
    tiny_model: str, rte: Path, tmp_path: Path, postgres: str
) -> None:
    from smartft.tune import storage_url

    out = tmp_path / "tune"
    args = tune_args(tiny_model, rte, out, "--methods", "plain,smart", "--n_trials", "2",
                     "--pruner", "none", "--storage", postgres, "--study_name", "pg")  # fmt: skip
    out.mkdir()
    workers = start_workers(args, 2)
    check_shared_study(storage_url(postgres, out), "pg", workers)
    assert not (out / "study.db").exists()
