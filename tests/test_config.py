from __future__ import annotations

import re
from pathlib import Path

import pytest

from smartft.config import load_yaml, resolve
from smartft.errors import ConfigError
from smartft.regularizer import SmartConfig
from smartft.teacher import BregmanConfig


def test_defaults_yaml_then_cli() -> None:
    run = resolve(
        {"learning_rate": "3e-5"},
        {"learning_rate": 1e-4, "seed": 7, "method": "smart", "smart_lambda": 3},
    )
    assert run.train.learning_rate == 3e-5  # the command line wins over the file
    assert run.train.seed == 7 and run.train.num_train_epochs == 3.0  # file, then default
    assert run.get(SmartConfig).smart_lambda == 3.0
    assert run.get(BregmanConfig).bregman_mu == 1.0
    assert run.flat()["smart_lambda"] == 3.0


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        resolve({}, {"learnig_rate": 1e-5}, "run.yaml")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("seed", "1.5", "expects int"),
        ("group_by_length", "maybe", "expects bool"),
        ("eval_strategy", "sometimes", "must be one of"),
        ("learning_rate", True, "expects float"),
        ("learning_rate", [1e-4], "expects float"),  # a list in a YAML file: not a traceback
        ("output_dir", None, None),
    ],
)
def test_bad_values(key: str, value: object, words: str | None) -> None:
    if words is None:
        assert resolve({key: value}).train.output_dir is None
        return
    with pytest.raises(ConfigError, match=words):
        resolve({key: value})


def test_method_flags_need_their_method() -> None:
    with pytest.raises(ConfigError, match="no effect with method 'plain'"):
        resolve({"smart_eps": "1e-3"})
    with pytest.raises(ConfigError, match="unknown method"):
        resolve({"method": "magic"})


def test_presets_load(tmp_path: Path) -> None:
    from smartft.config import load_yaml

    for preset in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        resolve({}, load_yaml(str(preset)), str(preset))
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(str(tmp_path / "bad.yaml"))


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("per_device_train_batch_size", "0", "must be ≥ 1"),
        ("learning_rate", "-1", "must be > 0"),
        ("train_fraction", "1.5", "(0, 1]"),
        ("warmup_ratio", "1", "[0, 1)"),
        ("eval_strategy", "steps", "eval_steps"),
    ],
)
def test_out_of_range_values(key: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        resolve({key: value})


def test_train_fraction_is_a_seeded_subset_shared_across_methods() -> None:
    from smartft.data.dataset import Examples

    examples = Examples(
        Path("x"),
        [(str(i),) for i in range(50)],
        [float(i) for i in range(50)],
        [str(i) for i in range(50)],
    )
    a, b = examples.sample(0.1, seed=1), examples.sample(0.1, seed=1)
    assert len(a) == 5 and a.texts == b.texts and a.labels == [float(t[0]) for t in a.texts]
    assert examples.sample(0.1, seed=2).texts != a.texts
    assert examples.sample(1.0, seed=1) is examples


@pytest.mark.parametrize(
    ("options", "switch"),
    [
        ({"lora_r": 4}, "--peft lora"),
        ({"kd_alpha": 0.3}, "--teachers"),
        ({"task_name": "rte", "task_sampling": "ratio"}, "several tasks"),
        ({"task_name": "rte,mrpc", "task_ratio": 0.5}, "--task_sampling ratio"),
        ({"task_name": "rte,mrpc", "task_temperature": 3}, "--task_sampling temperature"),
        ({"logging_dir": "logs"}, "--report_to"),
        ({"early_stopping_threshold": 0.01}, "--early_stopping_patience"),
        ({"ood_data_dir": "ood"}, "--ood_tasks"),
        ({"save_steps": 10}, "--save_strategy steps"),
        ({"save_total_limit": 1}, "--save_strategy epoch or steps"),
        ({"task_name": "rte", "text_columns": "a,b"}, "your own files"),
    ],
)
def test_an_option_whose_feature_is_off_is_refused(
    options: dict[str, object], switch: str, tmp_path: Path
) -> None:
    idle = next(k for k in options if k not in ("task_name",))
    with pytest.raises(ConfigError, match=f"'{idle}' has no effect without {switch}"):
        resolve(options)
    config = tmp_path / "run.yaml"  # the same from a YAML file, named as the source
    config.write_text("\n".join(f"{k}: {v}" for k, v in options.items()) + "\n")
    with pytest.raises(ConfigError, match=f"^{config}: '{idle}'"):
        resolve({}, load_yaml(str(config)), str(config))


def test_options_whose_feature_is_on_are_taken() -> None:
    run = resolve(
        {
            "peft": "lora",
            "lora_r": 4,
            "task_name": "rte,mrpc",
            "task_ratio": 0.5,
            "task_sampling": "ratio",
            "save_strategy": "steps",
            "save_steps": 5,
        }
    )
    assert run.train.lora_r == 4 and run.train.task_ratio == 0.5 and run.train.save_steps == 5
