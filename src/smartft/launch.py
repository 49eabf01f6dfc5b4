"""`smartft train` and `smartft.train(...)`: the recipe that fits the run."""

from __future__ import annotations

from typing import Any

from smartft.config import RunConfig
from smartft.multitask import parse_tasks
from smartft.recipe import FineTuneRecipe
from smartft.recipe_multitask import MultiTaskRecipe


def train(run: RunConfig) -> dict[str, Any]:
    """Fine-tune, evaluate, save; returns what `all_results.json` holds. Several tasks
    (`--task_name rte,mrpc`) train one shared encoder with a head each."""
    if len(parse_tasks(run.train.task_name)) > 1:
        return MultiTaskRecipe(run).train()
    return FineTuneRecipe(run).train()
