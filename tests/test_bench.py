"""The benchmark harness on the tiny random model: it runs every variant, interleaves them and
writes its files. Nothing here asserts a timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from smartft import bench
from smartft.errors import ConfigError


def test_variants_parse_and_unknown_ones_are_errors() -> None:
    variant = bench.get_variant("smart:smart_steps=2;bregman_mu=0")
    assert (variant.method, variant.options) == ("smart", {"smart_steps": "2", "bregman_mu": "0"})
    assert bench.get_variant("smart-fast").options == {
        "smart_fraction": 0.25,
        "bregman_fraction": 0.25,
    }
    with pytest.raises(ConfigError, match="unknown bench variant"):
        bench.get_variant("nonsense")


def test_timing_interleaves_and_rotates_the_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_build(setting: bench.Setting) -> tuple[dict[str, bench.Step], list[dict]]:
        return {n: (lambda b, n=n: calls.append(n)) for n in setting.variants}, [{}]

    monkeypatch.setattr(bench, "build", fake_build)
    setting = bench.Setting("tiny", 2, 8, ("plain", "smart"), warmup=1, steps=2, repeats=2)
    times = bench.time_steps(setting)
    assert {k: len(v) for k, v in times.items()} == {"plain": 4, "smart": 4}
    assert (
        calls == ["plain", "smart"] + ["plain"] * 2 + ["smart"] * 2 + ["smart"] * 2 + ["plain"] * 2
    )


def test_bench_on_the_tiny_model_writes_its_tables(tmp_path: Path) -> None:
    settings = bench.plan(
        ["tiny"],
        [16],
        4,
        ["plain", "trainer", "smart-rs", "smart", "smart-low-memory", "smart-fast"],
        scaling=False,
        warmup=1,
        steps=1,
        repeats=2,
    )
    summary = bench.run_bench(settings, tmp_path, "t", memory=False, report=lambda s: None)
    rows = {r["variant"]: r for r in summary["results"][0]["rows"]}
    assert rows["plain"]["ratio_to_plain"] == 1.0
    assert all(r["timed_steps"] == 2 and r["median_s"] > 0 for r in rows.values())
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["machine"]["torch"] and len(saved["results"]) == 1
    assert "| smart-fast |" in (tmp_path / "t.md").read_text()


@pytest.mark.parametrize("task", ["cosmosqa", "squad"])
def test_bench_times_the_multiple_choice_and_span_steps(task: str, tmp_path: Path) -> None:
    """The new shapes' steps (k rows per question, start and end positions) beside plain; a
    peer's step, which knows sentence classification only, is refused."""
    settings = bench.plan(
        ["tiny"], [16], 2, ["plain", "smart", "alice"], False, warmup=1, steps=1, repeats=1,
        task=task,
    )  # fmt: skip
    summary = bench.run_bench(settings, tmp_path, "t", memory=False, report=lambda s: None)
    rows = {r["variant"]: r for r in summary["results"][0]["rows"]}
    assert set(rows) == {"plain", "smart", "alice"} and rows["smart"]["median_s"] > 0
    assert f"on {task}" in (tmp_path / "t.md").read_text()
    batch = bench.make_batches(None, None, 2, 16, 1, 1000, task)[0]
    assert batch["input_ids"].shape[0] == (8 if task == "cosmosqa" else 2)
    with pytest.raises(ConfigError, match="sentence classification only"):
        bench.build(bench.Setting("tiny", 2, 16, ("trainer",), task=task))


def test_memory_probe_reports_a_peak_above_the_resting_size() -> None:
    setting = bench.Setting("tiny", 8, 32, ("smart",), warmup=1, steps=2, repeats=1)
    probe = bench.measure_memory(setting, "smart")
    assert probe["peak_rss_mb"] >= probe["rss_between_steps_mb"] > 50


def test_scaling_plan_adds_batch_length_and_k_settings() -> None:
    settings = bench.plan(["tiny"], [64], 16, ["plain", "smart"], scaling=True)
    assert len(settings) == 7
    assert {s.options.get("smart_steps") for s in settings} == {None, 2, 3}


def test_engine_uses_fused_adamw_and_tunes_the_allocator_on_linux() -> None:
    import sys

    import torch

    from smartft.optim import make_optimizer
    from smartft.runtime import tune_cpu_allocator

    optimizer = make_optimizer(torch.nn.Linear(3, 2), 1e-3, 0.01)
    assert optimizer.defaults["fused"] is True
    assert tune_cpu_allocator() is sys.platform.startswith("linux")


def test_a_lora_variant_trains_the_adapters_and_head_only() -> None:
    frozen = {}
    for name in ("plain", "plain:peft=lora"):
        model = bench.tiny_model()  # peft puts its adapters into this very model
        batches = bench.make_batches(None, None, 4, 16, 1, int(model.config.vocab_size))
        step = bench.smartft_step(model, bench.get_variant(name), 5, batches)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        step(batches[0])
        frozen[name] = sum(
            torch.equal(before[n], p) for n, p in model.named_parameters() if "lora_" not in n
        )
    assert frozen["plain"] == 0  # full fine-tuning moves every weight
    assert frozen["plain:peft=lora"] > 0  # the base model stays as it was


def test_a_quick_bench_writes_to_a_scratch_folder_not_the_committed_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from smartft.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["bench", "--models", "tiny", "--seq_lengths", "16", "--batch_size", "4"]
    args += [
        "--variants",
        "plain",
        "--no_memory",
        "--warmup",
        "1",
        "--steps",
        "1",
        "--repeats",
        "1",
    ]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code in (0, None)
    assert (tmp_path / "runs" / "bench" / "bench.md").is_file()
    assert not (tmp_path / "benchmarks").exists()
    assert "runs/bench/bench.md" in capsys.readouterr().out
