"""Crash-safe checkpoints, exact resume after SIGKILL, the non-finite policy, safe loading and
disk faults. Each test would fail without the mechanism it names."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from smartft.checkpoint import COMPLETE, STATE_FILE, complete_checkpoints
from smartft.methods import METHODS

from .conftest import SMART_FLAGS, train_args
from .test_choice import write_cosmos
from .test_engine import cli, events
from .test_span import write_squad
from .test_tagging import write_wnut

SMART = [
    *SMART_FLAGS,
    "--group_by_length",
    "--logging_steps",
    "1",
    "--eval_steps",
    "3",
]


def run_train(
    args: list[str], kill_at: str | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SMARTFT_KILL_AT", None)
    if kill_at:
        env["SMARTFT_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "smartft.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def same_run(a: Path, b: Path) -> None:
    """Identical weights, identical events (but timings), identical final metrics."""
    name = "adapter_model.safetensors" if (a / "adapter_model.safetensors").is_file() else ""
    wa, wb = (load_file(p / (name or "model.safetensors")) for p in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = [
        [{k: v for k, v in e.items() if k != "step_time_s"} for e in events(p)] for p in (a, b)
    ]
    assert strip[0] == strip[1]
    ra, rb = (json.loads((p / "all_results.json").read_text()) for p in (a, b))
    assert {k: v for k, v in ra.items() if k.startswith("eval_")} == {
        k: v for k, v in rb.items() if k.startswith("eval_")
    }


def killed_and_resumed(
    model: str, data: Path, tmp_path: Path, common: list[str], kill_at: str = "update:7"
) -> str:
    """Run once to the end, once killed at `kill_at` then resumed; the two must be one run.
    Returns the resumed run's stderr."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = run_train(train_args(model, data, reference, *common))
    assert done.returncode == 0, done.stderr
    args = train_args(model, data, killed, *common)
    assert run_train(args, kill_at=kill_at).returncode == -9
    resumed = run_train([*args, "--resume_from_checkpoint", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    same_run(reference, killed)
    return resumed.stderr


def test_sigkill_then_resume_gives_the_uninterrupted_run(
    tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    common = [*SMART, "--save_strategy", "steps", "--save_steps", "2"]
    reference = tmp_path / "reference"
    done = run_train(train_args(tiny_model, glue_dir, reference, *common))
    assert done.returncode == 0, done.stderr

    # killed right after update 7: the newest complete checkpoint is 6
    killed = tmp_path / "killed"
    args = train_args(tiny_model, glue_dir, killed, *common)
    assert run_train(args, kill_at="update:7").returncode == -9
    assert [p.name for p in complete_checkpoints(killed)] == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-6",
    ]
    resumed = run_train([*args, "--resume_from_checkpoint", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "checkpoint-6" in resumed.stderr
    same_run(reference, killed)

    # killed in the middle of writing checkpoint 4: it stays a leftover and is removed
    torn = tmp_path / "torn"
    args = train_args(tiny_model, glue_dir, torn, *common)
    assert run_train(args, kill_at="checkpoint:4").returncode == -9
    assert (torn / ".checkpoint-4.tmp").is_dir()
    assert [p.name for p in complete_checkpoints(torn)] == ["checkpoint-2"]
    resumed = run_train([*args, "--resume_from_checkpoint", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    assert "removed the leftover" in resumed.stderr
    assert not (torn / ".checkpoint-4.tmp").exists()
    same_run(reference, torn)


def test_a_resumed_runs_wall_time_counts_every_part(
    tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    """`train_runtime_s` of a resumed run adds the training time its checkpoint recorded (it
    used to hold only the part after the resume); a checkpoint from before that was recorded
    gives an unknown earlier part (None), which the results tables then mark."""
    common = [*SMART, "--save_strategy", "steps", "--save_steps", "2"]
    for name, legacy in (("recorded", False), ("legacy", True)):
        out = tmp_path / name
        args = train_args(tiny_model, glue_dir, out, *common)
        assert run_train(args, kill_at="update:7").returncode == -9
        state_file = out / "checkpoint-6" / STATE_FILE
        state = json.loads(state_file.read_text())
        assert state["elapsed_s"] > 0
        if legacy:
            del state["elapsed_s"]
            state_file.write_text(json.dumps(state))
        resumed = run_train([*args, "--resume_from_checkpoint", "auto"])
        assert resumed.returncode == 0, resumed.stderr
        results = json.loads((out / "all_results.json").read_text())
        before = results["train_runtime_before_resume_s"]
        if legacy:
            assert before is None
        else:
            assert before == round(state["elapsed_s"], 2)
            assert results["train_runtime_s"] > before


def test_save_total_limit_and_resume_needs_a_complete_checkpoint(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = train_args(
        tiny_model,
        glue_dir,
        out,
        "--save_strategy",
        "epoch",
        "--save_total_limit",
        "1",
        "--num_train_epochs",
        "3",
    )
    assert cli(args, capsys)[0] == 0
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-12"]
    fresh = [*args[:-2], "--num_train_epochs", "1", "--overwrite_output_dir"]
    code, _, err = cli(fresh, capsys)
    assert code == 0, err  # a new run clears the old run's checkpoints
    assert not (out / "checkpoint-12").exists()
    assert cli([*args, "--overwrite_output_dir"], capsys)[0] == 0
    (out / "checkpoint-12" / COMPLETE).unlink()
    code, _, err = cli([*args, "--resume_from_checkpoint", str(out / "checkpoint-12")], capsys)
    assert code == 2 and "no COMPLETE marker" in err


class Payload:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/smartft-pickle-was-executed")


def test_a_crafted_pickle_in_a_checkpoint_is_refused(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    MARKER.unlink(missing_ok=True)
    out = tmp_path / "run"
    args = train_args(
        tiny_model,
        glue_dir,
        out,
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--max_steps",
        "2",
    )
    assert cli(args, capsys)[0] == 0
    crafted = pickle.dumps({"state": Payload()}, protocol=2)
    (out / "checkpoint-2" / "optimizer.pt").write_bytes(crafted)
    code, _, err = cli([*args, "--max_steps", "4", "--resume_from_checkpoint", "auto"], capsys)
    assert code == 2 and "cannot resume" in err
    assert not MARKER.exists()


def test_non_finite_updates_are_skipped_then_the_run_stops(
    tiny_model: str,
    glue_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smartft import step

    real = step.task_loss
    calls = {"n": 0}
    poisoned: set[int] = set()

    def poison(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
        calls["n"] += 1
        value = real(logits, labels, regression)
        return value * float("nan") if calls["n"] in poisoned else value

    monkeypatch.setattr(step, "task_loss", poison)
    poisoned.update({3, 4})  # batches 3 and 4 = updates 3 and 4 (no accumulation)
    out = tmp_path / "some"
    args = train_args(
        tiny_model,
        glue_dir,
        out,
        "--method",
        "smart",
        "--save_strategy",
        "steps",
        "--save_steps",
        "12",
    )
    assert cli(args, capsys)[0] == 0
    results = json.loads((out / "all_results.json").read_text())
    assert results["skipped_updates"] == 2 and results["train_steps"] == 12
    assert [e["step"] for e in events(out) if e["event"] == "skip"] == [3, 4]
    teacher = json.loads((out / "checkpoint-12" / "smart_teacher.json").read_text())
    assert teacher["step"] == 10  # the teacher skipped the two updates too

    calls["n"] = 0
    poisoned.clear()
    poisoned.update(range(3, 100))
    out = tmp_path / "all"
    code, _, err = cli(train_args(tiny_model, glue_dir, out, "--save_strategy", "epoch"), capsys)
    assert code == 3
    assert "stopped at update 7: 5 updates in a row" in err
    assert "last finite loss was" in err and "at update 2" in err
    assert (out / "checkpoint-7" / COMPLETE).is_file()


UNSHARE = shutil.which("unshare")


def in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [UNSHARE or "unshare", "-rm", "sh", "-c", script],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )


def namespaces_work() -> bool:
    if UNSHARE is None:
        return False
    probe = in_namespace("mount -t tmpfs -o size=64k tmpfs /mnt && echo ok")
    return probe.returncode == 0 and "ok" in probe.stdout


needs_mounts = pytest.mark.skipif(
    not namespaces_work(), reason="cannot mount a private tmpfs here (unshare -rm)"
)


@needs_mounts
def test_full_disk_keeps_the_last_complete_checkpoint(
    tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    sizing = tmp_path / "sizing"
    args = train_args(
        tiny_model,
        glue_dir,
        sizing,
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--max_steps",
        "2",
    )
    assert run_train(args).returncode == 0
    one = sum(p.stat().st_size for p in (sizing / "checkpoint-2").iterdir())
    mount = tmp_path / "disk"
    mount.mkdir()
    out = mount / "run"
    command = " ".join(
        f"'{a}'"
        for a in train_args(
            tiny_model, glue_dir, out, "--save_strategy", "steps", "--save_steps", "2"
        )
    )
    size_kb = int(one * 1.6 / 1024) + 64  # room for one checkpoint and the logs, not two
    result = in_namespace(
        f"mount -t tmpfs -o size={size_kb}k tmpfs '{mount}' && "
        f"'{sys.executable}' -m smartft.cli {command}; echo exit=$?; "
        f"ls -a '{out}'; ls '{out}/checkpoint-2'"
    )
    assert "exit=2" in result.stdout, result.stdout + result.stderr
    assert "could not write checkpoint" in result.stderr and "free space there" in result.stderr
    assert "Traceback" not in result.stderr
    assert "the last complete checkpoint" in result.stderr and "is intact" in result.stderr
    assert ".checkpoint-4.tmp" not in result.stdout and COMPLETE in result.stdout


@needs_mounts
def test_read_only_output_folder_is_a_clear_error(
    tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    command = " ".join(f"'{a}'" for a in train_args(tiny_model, glue_dir, mount / "run"))
    result = in_namespace(
        f"mount -t tmpfs -o size=1m,ro tmpfs '{mount}' && "
        f"'{sys.executable}' -m smartft.cli {command}; echo exit=$?"
    )
    assert "exit=2" in result.stdout, result.stdout + result.stderr
    assert "cannot write there" in result.stderr and "Traceback" not in result.stderr


RESUME_FLAGS = {
    "plain": [],
    "smart": SMART_FLAGS[2:],
    "alice": ["--alice_plus_plus", "true", "--smart_eps", "1e-2"],
    "r3f": ["--r3f_eps", "1e-3"],
    "r4f": [],
    "freelb": ["--freelb_start_step", "5"],  # its update counter must survive the kill
    "child_tuning": ["--child_mode", "F"],  # its random masks' stream too
    "mixout": [],
    "l2sp": ["--weight_decay", "0"],
    "lnsr": ["--lnsr_layer", "1"],
    "dps": ["--dps_stage_ratio", "0.2"],
    "neftune": ["--neftune_alpha", "5"],  # its noise comes from the restored random stream
}


def test_the_resume_test_covers_every_registered_method() -> None:
    assert set(RESUME_FLAGS) == set(METHODS)


@pytest.mark.parametrize("method", sorted(RESUME_FLAGS))
def test_every_method_resumes_exactly(
    method: str, tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    common = [
        "--method", method, *RESUME_FLAGS[method], "--logging_steps", "1",
        "--save_strategy", "steps", "--save_steps", "4",
    ]  # fmt: skip
    assert "checkpoint-4" in killed_and_resumed(tiny_model, glue_dir, tmp_path, common)


@pytest.mark.parametrize("kill_at", ["update:7", "update:13"])
def test_a_run_resumed_from_an_epoch_checkpoint_is_the_uninterrupted_run(
    kill_at: str, tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    """An epoch's checkpoint is taken before the next epoch's data iterator draws from the RNG
    (6 updates an epoch here: killed in the second epoch and in the third). Failed before the
    resumed run restored the RNG before creating the iterator."""
    common = [
        "--method", "smart", "--bregman_start", "0.1", "--bregman_horizon", "0.1",
        "--bregman_dropout", "replay", "--logging_steps", "1", "--num_train_epochs", "3",
        "--save_strategy", "epoch", "--save_total_limit", "1",
    ]  # fmt: skip
    killed_and_resumed(tiny_model, glue_dir, tmp_path, common, kill_at)


@pytest.mark.parametrize("kind", ["lora", "tagging", "choice", "span"])
def test_lora_tagging_choice_and_span_runs_resume_exactly(
    kind: str, tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    """SMART on LoRA adapters (the teacher averages the adapters), on WNUT-style tagging, on
    Cosmos-style multiple choice and on SQuAD-style spans (windows of long contexts)."""
    common = [
        "--method", "smart", "--logging_steps", "1",
        "--save_strategy", "steps", "--save_steps", "4",
    ]  # fmt: skip
    if kind == "lora":
        data = glue_dir
        common += ["--peft", "lora", "--lora_target_modules", "query,value"]
    elif kind == "tagging":
        data = write_wnut(tmp_path / "ner")
        common += ["--task_name", "wnut17"]
    elif kind == "choice":
        data = write_cosmos(tmp_path / "mc" / "CosmosQA", n_train=40)
        common += ["--task_name", "cosmosqa", "--max_seq_length", "48"]
    else:
        data = write_squad(tmp_path / "qa" / "SQuAD", n_train=40)
        common += ["--task_name", "squad", "--max_seq_length", "40", "--doc_stride", "12"]
    assert "checkpoint-4" in killed_and_resumed(tiny_model, data, tmp_path, common)


def test_a_kill_between_the_epochs_checkpoint_and_its_evaluation_logs_it_once(
    tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    """The checkpoint at an epoch's last update is written before that epoch's evaluation; a
    run killed after the evaluation evaluates again on resume, and must log it once."""
    common = ["--method", "smart", "--save_strategy", "steps", "--save_steps", "6"]
    reference = tmp_path / "reference"
    assert run_train(train_args(tiny_model, glue_dir, reference, *common)).returncode == 0
    killed = tmp_path / "killed"
    args = train_args(tiny_model, glue_dir, killed, *common)
    assert run_train(args, kill_at="eval:6").returncode == -9
    assert [e["event"] for e in events(killed)][-1] == "eval"  # it was logged before the kill
    resumed = run_train([*args, "--resume_from_checkpoint", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    assert [e["step"] for e in events(killed) if e["event"] == "eval"] == [6, 12]
    same_run(reference, killed)


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.pt"])
def test_a_damaged_newest_checkpoint_is_named_and_auto_resume_takes_the_previous_one(
    damaged: str, tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    reference, out = tmp_path / "reference", tmp_path / "run"
    common = ["--save_strategy", "steps", "--save_steps", "4", "--max_steps", "8"]
    done = run_train(train_args(tiny_model, glue_dir, reference, *common))
    assert done.returncode == 0, done.stderr
    args = train_args(tiny_model, glue_dir, out, *common)
    assert run_train(args, kill_at="update:9").returncode == 0  # runs to the end: 2 checkpoints
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-4", "checkpoint-8"]
    newest = out / "checkpoint-8" / damaged
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    (out / "all_results.json").unlink()
    explicit = run_train([*args, "--resume_from_checkpoint", str(out / "checkpoint-8")])
    assert explicit.returncode == 2 and "Traceback" not in explicit.stderr
    assert f"checkpoint-8: {damaged} is damaged" in explicit.stderr
    assert "weights_only" not in explicit.stderr  # torch's advice is wrong for a damaged file
    resumed = run_train([*args, "--resume_from_checkpoint", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint-8: {damaged} is damaged" in resumed.stderr
    assert "resuming from" in resumed.stderr and "checkpoint-4 at update 4" in resumed.stderr
    same_run(reference, out)


def test_a_resume_path_that_does_not_exist_says_so(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = train_args(tiny_model, glue_dir, tmp_path / "run")
    code, _, err = cli([*args, "--resume_from_checkpoint", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "no such checkpoint folder" in err
