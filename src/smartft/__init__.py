"""smartft: robust fine-tuning of pre-trained language models.

A whole run, any method, as `smartft train` would do it:

    import smartft
    results = smartft.train(task_name="rte", data_dir="glue", method="r3f", output_dir="out")

The parts for one's own training loop:

    from smartft import SmartRegularizer, SmartConfig, MeanTeacher
"""

from typing import Any

from smartft.errors import ConfigError, DataError, SmartftError
from smartft.losses import symmetric_kl
from smartft.regularizer import SmartConfig, SmartRegularizer
from smartft.teacher import BregmanConfig, MeanTeacher, make_teacher

__version__ = "0.1.0"


def train(config: str | None = None, **options: Any) -> dict[str, Any]:
    """Train and evaluate like `smartft train`: `options` are its flags' names with Python values,
    `config` an optional YAML file they override; returns what all_results.json holds."""
    from smartft.config import load_yaml, resolve
    from smartft.launch import train as run_recipe

    yaml_values = load_yaml(config) if config else None
    return run_recipe(resolve(options, yaml_values, config or "config", "smartft.train"))


__all__ = [
    "BregmanConfig",
    "ConfigError",
    "DataError",
    "MeanTeacher",
    "SmartConfig",
    "SmartRegularizer",
    "SmartftError",
    "make_teacher",
    "symmetric_kl",
    "train",
]
