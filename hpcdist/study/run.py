"""Run one form of the study as its own mpiexec job and read back what it measured.

Each run is `mpiexec -n RANKS python -m hpcdist.train ...` started by
hpcdist.launcher.run_mpi (a clean environment), in its own run directory; the
figures come from the trainer's metrics.jsonl (one record per epoch) and
summary.json, never from the study's own clock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import launcher, straggler
from .forms import Form


@dataclass
class Run:
    """One form at one seed: its curve (per epoch) and its totals, or why it failed."""

    form: str  # Form.key
    name: str
    seed: int
    command: str
    error: str = ""  # "" when it finished
    epochs: list = field(default_factory=list)  # [epoch, step, training seconds so far, val acc]
    final_accuracy: float = float("nan")
    steps: int = 0
    train_seconds: float = float("nan")  # the epochs' training time, evaluation excluded
    wall_seconds: float = float("nan")  # the job, start-up included
    samples_per_s: float = float("nan")
    bytes_per_step: float = float("nan")  # sent by one worker per step (see sent_per_step)
    ps: dict = field(default_factory=dict)  # updates applied, gradients dropped, staleness

    @property
    def ok(self) -> bool:
        return not self.error

    def time_to(self, target: float) -> tuple[float, int] | None:
        """(training seconds, step) at the first evaluation with accuracy >= target, or None."""
        for _, step, seconds, acc in self.epochs:
            if acc >= target:
                return seconds, step
        return None

    def to_dict(self) -> dict:
        return asdict(self)


def run_form(
    form: Form,
    *,
    seed: int,
    common: list[str],
    run_dir: Path,
    straggle_s: float = 0.0,
    timeout: float = 600,
) -> Run:
    """Train `form` at `seed` in `run_dir`; a Run with its figures or its error line."""
    args = form.command([*common, "--seed", str(seed), "--run-dir", str(run_dir)])
    env = {}
    if straggle_s > 0:  # the last worker is the slow one
        env[straggler.ENV] = f"{form.workers - 1}:{straggle_s}"
    shown = " ".join(
        [*(f"{k}={v}" for k, v in env.items()), "mpiexec", "-n", str(form.ranks), "python", *args]
    )
    run = Run(form.key, form.name, seed, shown)
    try:
        res = launcher.run_mpi(form.ranks, args, timeout=timeout, env=env)
    except Exception as exc:  # a timeout: the job is gone, the row says why
        run.error = f"{type(exc).__name__}: {exc}"
        return run
    if res.returncode != 0:
        run.error = f"exit {res.returncode}: {error_line(res.output)}"
        return run
    try:
        read_outputs(run, run_dir)
    except (OSError, ValueError, KeyError) as exc:
        run.error = f"unreadable outputs in {run_dir}: {exc}"
    run.wall_seconds = res.seconds
    return run


def error_line(output: str) -> str:
    """The line of a failed job's output that says what went wrong (the last error, else last)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error:" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "(no output)"


def read_outputs(run: Run, run_dir: Path) -> None:
    """Fill `run` from run_dir/metrics.jsonl and run_dir/summary.json."""
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln]
    if not records:
        raise ValueError("metrics.jsonl holds no epoch")
    summary = json.loads((run_dir / "summary.json").read_text())
    total = 0.0
    for rec in records:
        total += rec["seconds"]
        run.epochs.append([rec["epoch"], rec["step"], total, rec["val_accuracy"]])
    run.final_accuracy = records[-1]["val_accuracy"]
    run.steps = summary["steps"]
    run.train_seconds = total
    run.samples_per_s = run.steps * summary["global_batch"] / total
    run.bytes_per_step = sent_per_step(summary)
    run.ps = ps_figures(summary.get("parameter_server"), run.steps)


def sent_per_step(summary: dict) -> float:
    """Bytes one worker sends per step, counted alike in every form.

    The allreduce and a split model count what rank 0 sends (summary.json's
    bytes_on_wire: a ring sends 2(p-1)/p of its buffer, a pipeline stage its
    activations or their gradients); a ps worker's bytes_on_wire also holds
    the replies it receives, so for a ps form it is the pushes the ps tasks
    took in (bytes_in) shared over the workers.
    """
    steps = max(summary["steps"], 1)
    ps = summary.get("parameter_server")
    if not ps:
        return summary["bytes_on_wire"] / steps
    pushed = sum(t["bytes_in"] for t in ps["tasks"])
    return pushed / summary["data_parallel_size"] / steps


def ps_figures(stats: dict | None, steps: int) -> dict:
    """The parameter server's totals the report shows ({} for the other forms)."""
    if not stats:
        return {}
    hist = {int(k): v for k, v in stats.get("staleness_histogram", {}).items()}
    served = sum(stats.get("bytes_served", []))
    return {
        "updates_applied": stats.get("updates_applied", 0),
        "gradients_dropped": stats.get("gradients_dropped", 0),
        "max_staleness": max(hist) if hist else 0,
        "ps_bytes_served_per_step": served / max(steps, 1),
    }


def save(runs: list[Run], path: Path) -> None:
    path.write_text(json.dumps([r.to_dict() for r in runs], indent=1) + "\n")


def load(path: Path) -> list[Run]:
    return [Run(**d) for d in json.loads(path.read_text())]
