"""Stage metrics: one JSON object per line in ``<stage>/metrics.jsonl`` and TensorBoard in ``<stage>/tb``.

Only the main rank writes. On resume, :meth:`MetricsLogger.rewind` drops records of steps after the
checkpoint (they will be logged again) but keeps event records (``{"event": ...}``), and TensorBoard
purges its events after that step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixmim.runs.rundir import METRICS_FILE, append_jsonl, atomic_write_text, read_jsonl


class MetricsLogger:
    """Append step records to JSONL and scalars to TensorBoard (no-ops when ``enabled`` is False)."""

    def __init__(self, stage_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(stage_dir) / METRICS_FILE
        self.tb_dir = Path(stage_dir) / "tb"
        self.enabled = enabled
        self.use_tensorboard = tensorboard
        self._writer = None

    def rewind(self, step: int) -> None:
        """Forget step records after ``step`` (a resumed run logs them again); keep event records."""
        if not self.enabled:
            return
        if self.path.is_file():
            kept = [r for r in read_jsonl(self.path) if "event" in r or r.get("step", 0) <= step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.close()
        self._open_tensorboard(purge_step=step + 1)

    def _open_tensorboard(self, purge_step: int | None = None) -> None:
        if self.use_tensorboard and self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow to import

            self._writer = SummaryWriter(str(self.tb_dir), purge_step=purge_step)

    def log(self, record: dict[str, Any], prefix: str = "") -> None:
        """Append ``record`` (must hold ``step``) and write its numeric values to TensorBoard."""
        if not self.enabled:
            return
        append_jsonl(self.path, record)
        self._open_tensorboard()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{prefix}{key}", value, record["step"])

    def event(self, record: dict[str, Any]) -> None:
        """Append an event record (e.g. a non-finite loss); events survive :meth:`rewind`."""
        if self.enabled:
            append_jsonl(self.path, record)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
