"""Run-directory outputs: metrics.jsonl, summary.json, curves.png, the epoch and closing lines.

(The progress bar or lines are hpcdist.progress.)
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import numpy as np

from .rundir import check_run_dir, open_append, replace_file

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"


def _jsonable(x):
    """json.dumps default=: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} value {x!r} is not JSON serializable")


class MetricsLogger:
    """Appends one JSON object per line to <run_dir>/metrics.jsonl, flushed at every log()."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._file: TextIO | None = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            check_run_dir(self.path.parent)
            self._file = open_append(self.path)

    def log(self, record: Mapping) -> dict:
        """Write `record` (e.g. {"epoch": 3, "train_loss": 0.4, "val_acc": 0.9}) as one line."""
        if not isinstance(record, Mapping):
            raise TypeError(f"record must be a mapping, got {type(record).__name__}")
        record = dict(record)
        if self._file is None:
            if self.enabled:
                raise ValueError(f"MetricsLogger for {self.path} is closed")
            return record
        line = json.dumps(record, default=_jsonable)  # before writing: no half lines
        self._file.write(line + "\n")
        self._file.flush()
        return record

    def close(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The records of <run_dir>/metrics.jsonl; a torn last line (a crash mid-write) is skipped."""
    path = Path(run_dir) / METRICS_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path} line {i + 1} is not JSON: {exc}") from exc
    return records


def truncate_metrics(run_dir: str | os.PathLike, last_epoch: int) -> int:
    """Keep only the records of epochs <= last_epoch in metrics.jsonl (atomic); returns how many
    were dropped. A run resumed from epoch k then logs epoch k + 1 once, not twice."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    records = read_metrics(run_dir)
    kept = [r for r in records if not isinstance(r.get("epoch"), int) or r["epoch"] <= last_epoch]
    if len(kept) == len(records) and path.read_text(encoding="utf-8").endswith("\n"):
        return 0
    text = "".join(json.dumps(r, default=_jsonable) + "\n" for r in kept)
    _replace_text(path, text)
    return len(records) - len(kept)


def _replace_text(path: Path, text: str) -> None:
    replace_file(path, lambda f: f.write(text.encode("utf-8")))


def write_summary(run_dir: str | os.PathLike, summary: Mapping) -> Path:
    """Write <run_dir>/summary.json atomically (temp file, fsync, rename); returns its path."""
    path = Path(run_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(summary), indent=2, sort_keys=True, default=_jsonable)
    _replace_text(path, text + "\n")
    return path


def _series(records: list[dict], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for i, r in enumerate(records):
        if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool):
            xs.append(r.get("epoch", i))
            ys.append(r[key])
    return xs, ys


def plot_curves(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path | None:
    """Plot every '*loss*' key and every '*acc*' key of metrics.jsonl against epoch to a PNG.

    Uses matplotlib's Agg canvas (no display, the global backend is left alone).
    Without matplotlib it warns and returns None instead of failing the run.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        warnings.warn(f"matplotlib is not available ({exc}); no curves plotted", stacklevel=2)
        return None
    records = read_metrics(run_dir)
    keys = sorted({k for r in records for k in r})
    panels = [
        ("loss", [k for k in keys if "loss" in k]),
        ("accuracy", [k for k in keys if "acc" in k]),
    ]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    for i, (title, names) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        for name in names:
            ax.plot(*_series(records, name), marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if names:
            ax.legend()
    fig.tight_layout()
    path = Path(out) if out is not None else Path(run_dir) / CURVES_FILE
    replace_file(path, lambda f: fig.savefig(f, format="png"))
    return path


def epoch_line(record: Mapping) -> str:
    """The line rank 0 prints after each epoch."""
    return (
        f"epoch {record['epoch']:>3}  train loss {record['train_loss']:.4f}  "
        f"val loss {record['val_loss']:.4f}  val acc {record['val_accuracy']:.4f}  "
        f"{record['samples_per_s']:,.0f} samples/s  "
        f"data wait {record['data_wait_share']:.0%}  "
        f"exchange {record['exchange_share']:.0%}"
    )


def closing_line(summary: Mapping, path, plot) -> str:
    """The run's last line: how it ended, in how long, where the outputs are."""
    wall, status = summary["wall_time_s"], summary["status"]
    acc = (summary.get("final") or {}).get("val_accuracy")
    if status == "finished":
        head = f"hpcdist: done in {wall:.1f} s"
        head += f", validation accuracy {acc:.4f}" if acc is not None else ""
    else:
        head = f"hpcdist: stopped ({status.replace('_', ' ')}) after {wall:.1f} s"
        head += f", at step {summary['steps']}; resume with --resume"
    return head + f"; {path}" + (f", {plot}" if plot else "")


#: What a run writes into its run directory besides checkpoints.
OUTPUT_FILES = (METRICS_FILE, SUMMARY_FILE, CURVES_FILE, "timeline.json")


def clear_outputs(run_dir: str | os.PathLike, checkpoints: str | os.PathLike) -> int:
    """Delete an earlier run's outputs and checkpoints from run_dir, and the half-written
    copies a killed run left (rundir.replace_file's `.<stem>-*.tmp`, a checkpoint's
    `.tmp-ckpt-*`); returns how many files."""
    run_dir = Path(run_dir)
    old = [run_dir / n for n in OUTPUT_FILES]
    old += list(run_dir.glob("timeline-rank*.json")) + list(Path(checkpoints).glob("ckpt-*.h5"))
    for stem in (Path(n).stem for n in OUTPUT_FILES):  # "timeline" covers timeline-rankN
        old += run_dir.glob(f".{stem}-*.tmp")
    old += Path(checkpoints).glob(".tmp-ckpt-*")
    old = [p for p in old if p.exists()]
    for path in old:
        path.unlink()
    return len(old)
