"""`metrics.jsonl`, the run's event log, and how metrics are printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from smartft.metrics import json_safe


class EventLog:
    """`metrics.jsonl`: one JSON object per logging or evaluation event (main process only).

    When resuming, events after the checkpoint's update are dropped: they are written again.
    """

    def __init__(self, path: Path | None, keep_until: int | None = None) -> None:
        kept: list[str] = []
        if path is not None and keep_until is not None and path.is_file():
            kept = [
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= keep_until
            ]
        self.file: TextIO | None = path.open("w", encoding="utf-8") if path else None
        if self.file is not None and kept:
            self.file.write("\n".join(kept) + "\n")

    def write(self, event: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(json_safe(event)) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
