"""Run-directory outputs: metrics.jsonl, summary.json, curves.png and a progress line."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import numpy as np

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
            self._file = open(self.path, "a", encoding="utf-8")

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
    """Write `text` to a new file beside `path`, fsync it, rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    fig.savefig(path, format="png")
    return path


def _default_enabled() -> bool:
    from . import runtime

    return runtime.rank() == 0


class Progress:
    """Per-epoch progress on rank 0: tqdm on a terminal, plain lines otherwise.

    Plain mode prints a line each time another `every_fraction` of `total` is
    done or `every_s` seconds have passed, and a last line at close().
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        every_fraction: float = 0.1,
        every_s: float = 30.0,
        use_tqdm: bool | None = None,
    ):
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total, self.desc, self.n = int(total), desc, 0
        self.enabled = _default_enabled() if enabled is None else enabled
        self.stream = stream if stream is not None else sys.stdout
        self.every_fraction, self.every_s = every_fraction, every_s
        self._start = self._last_print = time.monotonic()
        self._next_n = self._step_n()
        self._postfix: dict = {}
        self._printed_n = -1
        self._bar = self._make_tqdm(use_tqdm) if self.enabled else None

    def _make_tqdm(self, use_tqdm: bool | None):
        if use_tqdm is None:
            use_tqdm = bool(getattr(self.stream, "isatty", lambda: False)())
        if not use_tqdm:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.total, desc=self.desc, file=self.stream, dynamic_ncols=True)

    def _step_n(self) -> int:
        return max(1, int(np.ceil(self.total * self.every_fraction)))

    def update(self, n: int = 1, **postfix) -> None:
        """Count `n` more items done; keyword values (loss=...) are shown with the count."""
        self.n += n
        self._postfix.update(postfix)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(self._postfix, refresh=False)
            return
        now = time.monotonic()
        if self.n >= self._next_n or now - self._last_print >= self.every_s:
            self._print_line(now)
            while self._next_n <= self.n:
                self._next_n += self._step_n()

    def _print_line(self, now: float) -> None:
        elapsed = now - self._start
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f" {self.n / elapsed:.1f} it/s" if elapsed > 0 else ""
        extra = "".join(f" {k}={_fmt(v)}" for k, v in self._postfix.items())
        head = f"{self.desc}: " if self.desc else ""
        line = f"{head}{self.n}/{self.total}{pct}{rate} {elapsed:.1f}s{extra}\n"
        self.stream.write(line)
        self.stream.flush()
        self._last_print, self._printed_n = now, self.n

    def close(self) -> None:
        """Finish the bar, or print the last plain line if the last count was not shown."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._printed_n != self.n:
            self._print_line(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


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
    """Delete an earlier run's outputs and checkpoints from run_dir; returns how many files."""
    run_dir = Path(run_dir)
    old = [run_dir / n for n in OUTPUT_FILES]
    old += list(run_dir.glob("timeline-rank*.json")) + list(Path(checkpoints).glob("ckpt-*.h5"))
    old = [p for p in old if p.exists()]
    for path in old:
        path.unlink()
    return len(old)
