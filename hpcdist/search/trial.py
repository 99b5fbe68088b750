"""One trial: a Trainer on the group's communicator, reporting each epoch, pruned or failed cleanly.

Every rank of the group calls run_trial() with the same arguments. The trial's
run directory is its own (trials/<trial>/), written by rank 0 of the group.
After each epoch the group's root appends the epoch's metric to the journal
and asks the pruner, and the group agrees on the answer; a non-finite loss
(the learning rate diverged) ends the trial as failed. Any exception the
trial raises is caught on every rank and recorded as the trial's error.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from .. import metrics
from ..errors import HpcdistError
from ..trainer import Trainer
from .journal import Journal


class TrialDiverged(HpcdistError):
    """A trial's loss became NaN or infinite."""


@dataclass
class Outcome:
    """How a trial ended: what the journal's end record and results.csv hold."""

    status: str  # ok | failed | pruned
    val_accuracy: float = math.nan
    val_loss: float = math.nan
    epochs: int = 0
    seconds: float = 0.0
    error: str = ""
    checkpoint: str = ""

    def record(self, trial: str) -> dict:
        return {"event": "end", "trial": trial, **self.__dict__}


class _Reporter:
    """The per-epoch hook: journal report, divergence check, pruning decision (group-wide)."""

    def __init__(self, trial: str, journal: Journal | None, pruner, metric: str, sign: float):
        self.trial, self.journal, self.pruner = trial, journal, pruner
        self.metric, self.sign = metric, sign

    def decide(self, guard, epoch: int, record: dict, train_loss: float) -> bool:
        """Whether to prune after `epoch` (every rank gets rank 0's answer)."""
        losses = (train_loss, record["val_loss"])
        if not all(math.isfinite(v) for v in losses):  # reduced values: the same on every rank
            raise TrialDiverged(
                f"trial {self.trial} diverged at epoch {epoch}: train loss {losses[0]}, "
                f"val loss {losses[1]}"
            )
        prune = False
        if guard.rank == 0 and self.journal is not None:
            value = float(record[self.metric])
            with self.journal.locked() as j:
                reports = _reports(j.read(), self.sign)
                prune = self.pruner.should_prune(self.trial, epoch, self.sign * value, reports)
                j.append({"event": "report", "trial": self.trial, "epoch": epoch, "value": value})
        return bool(guard.bcast(prune, what=f"trial {self.trial}'s pruning decision"))


def _reports(records: list[dict], sign: float) -> dict:
    out: dict = {}
    for rec in records:
        if rec.get("event") == "report":
            out.setdefault(rec["trial"], {})[int(rec["epoch"])] = sign * float(rec["value"])
    return out


class SearchTrainer(Trainer):
    """A Trainer whose evaluation also reports to the search (and may stop the run: 'pruned')."""

    def __init__(self, config, comm, *, reporter: _Reporter):
        super().__init__(config, comm)
        self.reporter, self.prune_next = reporter, False

    def evaluate(self) -> dict:
        record = super().evaluate()
        epoch = self.epoch + 1
        train_loss = getattr(self, "epoch_train_loss", 0.0)  # set by train_epoch, all-reduced
        decided = self.reporter.decide(self.guard, epoch, record, train_loss)
        self.prune_next = decided and epoch < self.cfg.epochs
        return record

    def train_epoch(self, progress) -> str | None:
        if self.prune_next:
            return "pruned"
        return super().train_epoch(progress)


def run_trial(cfg, comm, *, trial: str, journal: Journal | None, pruner, metric, sign) -> Outcome:
    """Train `cfg` on `comm` (collective over it); the Outcome, the same on every rank."""
    start = time.perf_counter()
    reporter = _Reporter(trial, journal, pruner, metric, sign)
    try:
        with SearchTrainer(cfg, comm, reporter=reporter) as trainer:
            summary = trainer.fit()
            ckpts = trainer.ckpt.local_steps()
            path = str(trainer.ckpt.path_for(ckpts[-1])) if ckpts else ""
    except Exception as exc:  # recorded as the trial's error; the search goes on
        return Outcome(
            "failed", seconds=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}"
        )
    # A trial killed after its last epoch's checkpoint resumes with no epoch left to run.
    final = summary.get("final") or _last_record(cfg.run_dir)
    return Outcome(
        "pruned" if summary["status"] == "pruned" else "ok",
        val_accuracy=float(final.get("val_accuracy", math.nan)),
        val_loss=float(final.get("val_loss", math.nan)),
        epochs=int(summary["epochs"]),
        seconds=time.perf_counter() - start,
        checkpoint=path,
    )


def _last_record(run_dir) -> dict:
    path = Path(run_dir) / metrics.METRICS_FILE
    return (metrics.read_metrics(run_dir) or [{}])[-1] if path.exists() else {}
