"""Pruners: stop a trial early when its epoch's metric is poor next to the other trials'.

A pruner is asked once per epoch: should_prune(trial, epoch, value, reports),
where `reports` is {trial: {epoch: value}} of every trial so far (the journal's
report records) and values are "higher is better" (the search negates a
metric to minimise). Chosen by name: none, median, asha.

- median (Optuna's MedianPruner): prune when the value is below the median of
  the other trials' values at the same epoch, once `startup_trials` (5) others
  have reported there.
- asha (Ray Tune's ASHA, asynchronous successive halving): rungs at epochs
  grace_period * reduction_factor**k (defaults 1 and 4) below the last epoch;
  a trial reaching a rung is stopped when its value is below the
  (1 - 1/reduction_factor) quantile of the values recorded there before it.
"""

from __future__ import annotations

import numpy as np


class Pruner:
    """Never prunes; the base of the others."""

    name = "none"

    def __init__(self, max_epochs: int):
        self.max_epochs = max_epochs

    def should_prune(self, trial: str, epoch: int, value: float, reports: dict) -> bool:
        return False

    @staticmethod
    def others_at(trial: str, epoch: int, reports: dict) -> list[float]:
        """The other trials' values reported at `epoch`, in trial order."""
        return [r[epoch] for t, r in sorted(reports.items()) if t != trial and epoch in r]


class MedianPruner(Pruner):
    name = "median"

    def __init__(self, max_epochs: int, *, startup_trials: int = 5):
        super().__init__(max_epochs)
        self.startup_trials = _positive(startup_trials, "startup_trials", low=0)

    def should_prune(self, trial: str, epoch: int, value: float, reports: dict) -> bool:
        if epoch >= self.max_epochs:
            return False
        others = self.others_at(trial, epoch, reports)
        if len(others) < max(self.startup_trials, 1):
            return False
        return bool(value < float(np.median(others)))


class ASHAPruner(Pruner):
    name = "asha"

    def __init__(self, max_epochs: int, *, grace_period: int = 1, reduction_factor: int = 4):
        super().__init__(max_epochs)
        self.grace_period = _positive(grace_period, "grace_period")
        self.reduction_factor = _positive(reduction_factor, "reduction_factor", low=2)

    @property
    def rungs(self) -> list[int]:
        """The epochs at which trials are compared."""
        out, r = [], self.grace_period
        while r < self.max_epochs:
            out.append(r)
            r *= self.reduction_factor
        return out

    def should_prune(self, trial: str, epoch: int, value: float, reports: dict) -> bool:
        if epoch not in self.rungs:
            return False
        before = self.others_at(trial, epoch, reports)  # recorded at this rung so far
        if not before:
            return False
        cutoff = float(np.nanpercentile(before, (1 - 1 / self.reduction_factor) * 100))
        return bool(value < cutoff)


PRUNERS = {p.name: p for p in (Pruner, MedianPruner, ASHAPruner)}


def names() -> list[str]:
    return list(PRUNERS)


def create(name: str, max_epochs: int, settings: dict | None = None) -> Pruner:
    """The pruner called `name`, with the [search] table's settings it takes."""
    if name not in PRUNERS:
        raise ValueError(f"--prune must be one of {names()}, got {name!r}")
    cls = PRUNERS[name]
    wanted = {
        "median": ("startup_trials",),
        "asha": ("grace_period", "reduction_factor"),
    }.get(name, ())
    kwargs = {k: v for k, v in (settings or {}).items() if k in wanted}
    return cls(max_epochs, **kwargs)


def _positive(value, name: str, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"[search] {name} must be an integer >= {low}, got {value!r}")
    return value
