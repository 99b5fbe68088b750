"""Write the study's report.md and its plots (matplotlib, Agg) into the run directory."""

from __future__ import annotations

from pathlib import Path

from .conclusion import conclusion
from .report import TIE, ps_table, summarize, table
from .run import Run

#: What the table's columns measure (the runs' own metrics.jsonl and summary.json).
LEGEND = (
    "Time to the target: training seconds summed over the epochs (evaluation and start-up "
    "excluded) at the first epoch-end evaluation at or above it, so its resolution is one "
    "epoch. Step: the worker's step then. Samples/s: samples trained per training second. "
    "Bytes/step: what one worker sends per step (rank 0's exchange count; for a ps form the "
    "pushes the ps took in, per worker). Mean ± sample standard deviation over the seeds.\n"
)

PLOTS = {"accuracy_vs_time.png": (2, "training time (s)"), "accuracy_vs_steps.png": (1, "step")}


def plots(runs: list[Run], target: float, directory: Path) -> list[Path]:
    """Validation accuracy against training time and against steps.

    One colour per form: each seed a faint line, the mean over its seeds (epoch by
    epoch) a bold one. The x axis ends at 3x the latest time (step) any seed
    reached the target, where one did, and the title says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in runs if r.ok and r.epochs]
    keys = list(dict.fromkeys(r.form for r in done))
    colors = {k: plt.cm.tab10(i % 10) for i, k in enumerate(keys)}
    paths = []
    for name, (column, label) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for k in keys:
            mine = [r for r in done if r.form == k]
            for r in mine:
                ax.plot(*_xy(r.epochs, column), color=colors[k], alpha=0.25, linewidth=0.8)
            mean = _mean_curve([r.epochs for r in mine])
            tag = f"({k}) {mine[0].name}" + (f", mean of {len(mine)}" if len(mine) > 1 else "")
            ax.plot(*_xy(mean, column), marker=".", color=colors[k], label=tag, linewidth=2)
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
        hits = [h for h in (r.time_to(target) for r in done) if h is not None]
        if hits:
            right = 3 * max(h[2 - column] for h in hits)
            ax.set_xlim(0, right)
            ax.set_title(f"x axis cut at 3x the latest seed to reach {target:g}", fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(max(0.0, target - 0.2), 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path = directory / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _mean_curve(curves: list[list]) -> list[list]:
    """Epoch by epoch mean of the seeds' [epoch, step, seconds, accuracy] (the common epochs)."""
    n = min(len(c) for c in curves)
    return [[sum(c[i][j] for c in curves) / len(curves) for j in range(4)] for i in range(n)]


def _xy(epochs, column: int) -> tuple[list, list]:
    return [e[column] for e in epochs], [e[3] for e in epochs]


def write(
    runs: list[Run], *, target: float, directory: Path, header: str = "", tie: float = TIE
) -> Path:
    """directory/report.md (table, ps figures, conclusion, plots, commands); its path."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = summarize(runs, target)
    pictures = plots(runs, target, directory)
    ps = ps_table(rows)
    text = ["# Study: which form reaches a good model fastest\n", header]
    text += [f"\n## Results (target validation accuracy {target:g})\n", table(rows, target)]
    text += ["\n", LEGEND]
    if ps:
        text += [
            "\nParameter-server figures (mean over seeds; staleness in versions between a "
            "gradient's pull and its update; bytes in and out of the ps tasks, per worker step):\n",
            ps,
        ]
    text += ["\n## Conclusion\n", conclusion(rows, target, tie) + "\n", "\n## Plots\n"]
    text += [f"![{p.stem}]({p.name})\n" for p in pictures]
    text += ["\n## Runs\n"] + [
        f"- ({r.form}) seed {r.seed}: `{r.command}`" + (f" -- {r.error}" if r.error else "") + "\n"
        for r in runs
    ]
    path = directory / "report.md"
    path.write_text("".join(text))
    return path
