"""What a search leaves: results.csv (every trial) and top.json (the best k, best first).

Both are rewritten whole from the journal (write to a temp file, rename), so
they always agree with it, whichever process wrote them last.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from .journal import TrialState

COLUMNS = ("trial", "status", "val_accuracy", "val_loss", "epochs", "seconds", "error")


def rows(plan: list[dict], states: dict[str, TrialState], max_retries: int) -> list[dict]:
    """One row per trial of the plan: its end (or pending/running) and its settings."""
    out = []
    for t in plan:
        st = states[t["trial"]]
        end = st.end or {}
        status = end.get("status", "pending")
        if status == "failed" and not st.finished(max_retries):
            status = "pending"  # will be retried
        row = {
            "trial": t["trial"],
            "status": status,
            "val_accuracy": end.get("val_accuracy", math.nan),
            "val_loss": end.get("val_loss", math.nan),
            "epochs": end.get("epochs", 0),
            "seconds": end.get("seconds", math.nan),
            "error": end.get("error", ""),
            "checkpoint": end.get("checkpoint", ""),
        }
        row.update({k: _text(v) for k, v in t["params"].items()})
        out.append(row)
    return out


def best(table: list[dict], metric: str, mode: str, k: int) -> list[dict]:
    """The k finished (status ok) rows best by `metric`; ties go to the earlier trial."""
    ok = [r for r in table if r["status"] == "ok" and math.isfinite(r[metric])]
    sign = -1.0 if mode == "max" else 1.0
    return sorted(ok, key=lambda r: (sign * r[metric], r["trial"]))[:k]


def write(directory: Path, table: list[dict], names: list[str], top: list[dict]) -> None:
    """results.csv and top.json in `directory`, each replaced atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*COLUMNS, *names])
    for r in table:
        writer.writerow([_cell(r[c]) for c in COLUMNS] + [r.get(n, "") for n in names])
    _replace(directory / "results.csv", buf.getvalue())
    entries = [
        {
            "trial": r["trial"],
            "val_accuracy": r["val_accuracy"],
            "val_loss": r["val_loss"],
            "checkpoint": _relative(r["checkpoint"], directory),
            "params": {n: r.get(n) for n in names},
        }
        for r in top
    ]
    _replace(directory / "top.json", json.dumps(entries, indent=2) + "\n")


def read_csv(path: str | os.PathLike) -> list[dict]:
    """results.csv as a list of dicts (numbers as floats; empty cells as NaN)."""
    with open(path, newline="") as f:
        out = []
        for r in csv.DictReader(f):
            for c in ("val_accuracy", "val_loss", "seconds"):
                r[c] = float(r[c]) if r[c] else math.nan
            r["epochs"] = int(r["epochs"] or 0)
            out.append(r)
    return out


def _text(v) -> str | float | int:
    """A setting's value as a cell: lists as '128,64'."""
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v


def _cell(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def _relative(path: str, directory: Path) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(directory.resolve()))
    except ValueError:
        return str(path)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
