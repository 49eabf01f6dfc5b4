"""`metrics.jsonl`, the run's event log, and how metrics are printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from smartft.metrics import json_safe


class EventLog:
    """`metrics.jsonl`: one JSON object per logging or evaluation event (main process only).

    When resuming, the log is cut back to what it held when the checkpoint was written (`keep`
    lines, which the checkpoint records): everything after is written again, once. (Checkpoints
    older than that record keep the events up to their update, `keep_until`.)
    """

    def __init__(
        self, path: Path | None, keep_until: int | None = None, keep: int | None = None
    ) -> None:
        kept: list[str] = []
        if path is not None and path.is_file() and (keep is not None or keep_until is not None):
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
            if keep is not None:
                kept = lines[:keep]
            else:
                kept = [x for x in lines if json.loads(x).get("step", 0) <= (keep_until or 0)]
        self.file: TextIO | None = path.open("w", encoding="utf-8") if path else None
        self.lines = len(kept)
        if self.file is not None and kept:
            self.file.write("\n".join(kept) + "\n")

    def write(self, event: dict[str, Any]) -> None:
        self.lines += 1
        if self.file is not None:
            self.file.write(json.dumps(json_safe(event)) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
