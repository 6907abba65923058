"""The per-step metrics of a run: ``metrics.csv`` (and optionally TensorBoard), consistent
across resumption."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["MetricsLog"]


class MetricsLog:
    """CSV of every logged step (rank 0); on resume, rows past the checkpoint are dropped so
    the file reads as one uninterrupted run."""

    def __init__(self, path: Path, resume_step: int | None, tensorboard_dir: Path | None):
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            if rows:
                self.fields = list(rows[0].keys())
                self._rewrite(rows)
            else:
                path.unlink()
        elif path.exists():
            path.unlink()
        self.tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("--tensorboard needs the tensorboard package (pip install tensorboard)") from e
            self.tb = SummaryWriter(str(tensorboard_dir))

    def _rewrite(self, rows):
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(rows)
        tmp.replace(self.path)

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        if self.fields is None:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self):
        if self.tb is not None:
            self.tb.close()
