"""search.png: the metric against each searched setting, and every trial's learning curve."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from .. import metrics

_COLORS = {"ok": "tab:blue", "pruned": "tab:orange", "failed": "tab:red", "pending": "tab:gray"}


def plot_search(directory: Path, table: list[dict], names: list[str], metric: str) -> Path | None:
    """Write directory/search.png; None (with a warning) without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        warnings.warn(f"matplotlib is not available ({exc}); no search.png", stacklevel=2)
        return None
    panels = len(names) + 1
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        _setting_panel(fig.add_subplot(rows, cols, i + 1), table, name, metric)
    _curves_panel(fig.add_subplot(rows, cols, panels), directory, table, metric)
    fig.tight_layout()
    path = directory / "search.png"
    fig.savefig(path, format="png")
    return path


def _setting_panel(ax, table: list[dict], name: str, metric: str) -> None:
    values = [r[name] for r in table]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    labels = sorted({str(v) for v in values}) if not numeric else []
    for status, color in _COLORS.items():
        pts = [(r[name], r[metric]) for r in table if r["status"] == status]
        pts = [(x, y) for x, y in pts if isinstance(y, float) and math.isfinite(y)]
        if not pts:
            continue
        xs = [x if numeric else labels.index(str(x)) for x, _ in pts]
        ax.plot(xs, [y for _, y in pts], "o", color=color, label=status, markersize=5)
    if numeric and all(v > 0 for v in values) and max(values) / min(values) >= 20:
        ax.set_xscale("log")
    if labels:
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(name)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def _curves_panel(ax, directory: Path, table: list[dict], metric: str) -> None:
    for r in table:
        run = directory / "trials" / r["trial"]
        records = metrics.read_metrics(run) if (run / metrics.METRICS_FILE).exists() else []
        xs = [rec["epoch"] for rec in records if metric in rec]
        ys = [rec[metric] for rec in records if metric in rec]
        if not xs:
            continue
        pruned = r["status"] == "pruned"
        ax.plot(xs, ys, linestyle="--" if pruned else "-", color=_COLORS.get(r["status"]), lw=1)
        if pruned:
            ax.plot(xs[-1], ys[-1], marker="x", color="tab:orange", markersize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("learning curves (x: pruned)")
    ax.grid(True, alpha=0.3)
