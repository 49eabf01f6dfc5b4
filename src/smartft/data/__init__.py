"""Task registry, strict readers, tokenization and batching."""

from smartft.data.dataset import Examples, load_examples
from smartft.data.tasks import TASKS, TaskSpec, get_task

__all__ = ["TASKS", "Examples", "TaskSpec", "get_task", "load_examples"]
