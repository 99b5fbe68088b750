"""The study's report: a table per form over seeds, plots, and a conclusion computed from them.

rows = summarize(runs, target=0.95)
text = conclusion(rows, target=0.95)      # which form got there first, and why
write(runs, target=0.95, directory=D)     # D/report.md, D/accuracy_vs_time.png, ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .run import Run

#: Forms whose mean times to the target are within this fraction of the fastest tie with it.
TIE = 0.05


@dataclass
class Row:
    """One form over its seeds."""

    key: str
    name: str
    seeds: int = 0
    errors: list = field(default_factory=list)
    times: list = field(default_factory=list)  # seconds to the target, per seed that reached it
    target_steps: list = field(default_factory=list)
    finals: list = field(default_factory=list)
    rates: list = field(default_factory=list)  # samples/s
    wire: list = field(default_factory=list)  # bytes per step
    ps: list = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.finals)

    @property
    def reached_all(self) -> bool:
        """Every seed ran and reached the target."""
        return self.seeds > 0 and len(self.times) == self.seeds

    @property
    def time(self) -> float:
        return mean(self.times)

    @property
    def step_time(self) -> float:
        """Mean training seconds per step up to the target."""
        return mean([t / s for t, s in zip(self.times, self.target_steps, strict=True)])


def mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else math.nan


def spread(xs) -> float:
    """Sample standard deviation (nan for fewer than two)."""
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan


def summarize(runs: list[Run], target: float) -> list[Row]:
    """One Row per form, in the order the forms first appear."""
    rows: dict[str, Row] = {}
    for r in runs:
        row = rows.setdefault(r.form, Row(r.form, r.name))
        row.seeds += 1
        if not r.ok:
            row.errors.append(r.error)
            continue
        row.finals.append(r.final_accuracy)
        row.rates.append(r.samples_per_s)
        row.wire.append(r.bytes_per_step)
        if r.ps:
            row.ps.append(r.ps)
        hit = r.time_to(target)
        if hit is not None:
            row.times.append(hit[0])
            row.target_steps.append(hit[1])
    return list(rows.values())


def ranking(rows: list[Row], tie: float = TIE) -> tuple[list[Row], list[Row]]:
    """(the fastest forms, tied within `tie`; the other forms that reached, fastest first)."""
    reached = sorted((r for r in rows if r.reached_all), key=lambda r: r.time)
    if not reached:
        return [], []
    best = reached[0].time
    winners = [r for r in reached if r.time <= best * (1 + tie)]
    return winners, reached[len(winners) :]


def fmt(xs, digits: int = 2, scale: float = 1.0) -> str:
    """'mean ± spread' (spread only over two or more seeds)."""
    if not len(xs):
        return "-"
    m, s = mean(xs) * scale, spread(xs) * scale
    text = f"{m:,.{digits}f}"
    return text if math.isnan(s) else f"{text} ± {s:,.{digits}f}"


def _time_cell(row: Row) -> str:
    if row.errors and not row.ok:
        return f"failed: {row.errors[0]}"
    if not row.times:
        return "not reached"
    text = fmt(row.times)
    return text if row.reached_all else f"{text} (reached in {len(row.times)}/{row.seeds} seeds)"


def table(rows: list[Row], target: float) -> str:
    """The markdown table: one line per form."""
    head = (
        f"| form | seeds ok | time to {target:g} (s) | step at {target:g} | final accuracy "
        "| samples/s | bytes/step |\n|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| ({r.key}) {r.name} | {r.ok}/{r.seeds} | {_time_cell(r)} | {fmt(r.target_steps, 0)} "
        f"| {fmt(r.finals, 4)} | {fmt(r.rates, 0)} | {fmt(r.wire, 0)} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def ps_table(rows: list[Row]) -> str:
    """The parameter-server forms' own figures (mean over seeds); '' when there are none."""
    rows = [r for r in rows if r.ps]
    if not rows:
        return ""
    keys = ("updates_applied", "gradients_dropped", "max_staleness", "ps_bytes_served_per_step")
    out = "| form | " + " | ".join(k.replace("_", " ") for k in keys) + " |\n"
    out += "|---" * (len(keys) + 1) + "|\n"
    for r in rows:
        cells = [fmt([p[k] for p in r.ps], 0) for k in keys]
        out += f"| ({r.key}) {r.name} | " + " | ".join(cells) + " |\n"
    return out
