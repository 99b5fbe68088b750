"""What a trainer's checkpoint holds, and how a resume checks and restores it.

A checkpoint of a trainer holds `params/` and `optimizer/` (whole arrays,
whichever exchange held them), and per rank its input-pipeline position,
dropout RNG, exchange residuals and `progress/` (this rank's training-loss
sum and sample count of the epoch in progress, so a resumed epoch reports
what an uninterrupted one would). `meta` holds the config, the optimizer's
scalar settings and the data set's fingerprint.

Resume refuses a checkpoint of another model, world size or data set, or
written with settings that change what the run computes (REFUSED); the
optimizer settings a config may change (build.RESUMABLE_SETTINGS) are
applied over the checkpoint's with a warning, and summary.json records both.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import build, metrics
from .backend import to_numpy
from .checkpoint import CheckpointError, CheckpointWarning, expected_spec
from .parallel import checkpoints as parallel_checkpoints

#: Settings a resume must share with the checkpoint's run.
REFUSED = ("model", "hidden", "activation", "optimizer", "batch_size", "seed", "compression")


class TrainState:
    """Saves and restores one Trainer's state through its CheckpointManager."""

    def __init__(self, trainer):
        self.tr = trainer
        self.resumed_from: str | None = None
        self.changed_on_resume: dict = {}

    def arrays(self) -> tuple[dict, dict]:
        """(arrays by group, meta) for a checkpoint of this exact moment."""
        tr = self.tr
        model_state = tr.model.state_dict()
        names = {p.name for p in tr.params}
        opt = tr.optimizer.state_dict()
        loss_sum, seen = tr.sums
        arrays = {
            "params": {k: v for k, v in model_state.items() if k in names},
            "optimizer": {k: np.asarray(v) for k, v in opt.items() if isinstance(v, np.ndarray)},
            "rng": {k: np.asarray(v) for k, v in model_state.items() if k not in names},
            "pipeline": _arrays(tr.data.train.state_dict()),
            "residuals": _arrays(tr.exchange.state_dict()),
            "progress": {"loss_sum": np.float64(loss_sum), "seen": np.int64(seen)},
        }
        meta = {
            "config": tr.cfg.to_dict(),
            "optimizer": {k: v for k, v in opt.items() if not isinstance(v, np.ndarray)},
            "data_fingerprint": tr.data.fingerprint,
        }
        return {g: d for g, d in arrays.items() if d}, meta

    def save(self):
        """Checkpoint now (collective); returns the file's path."""
        tr = self.tr
        arrays, meta = self.arrays()
        shards, layout = (), getattr(tr, "layout", None)
        if layout is not None:  # a split model: whole arrays joined from every rank's slice
            arrays, shards = parallel_checkpoints.save_parts(tr.exchange, layout, arrays)
        return tr.ckpt.save(tr.step, tr.epoch, arrays, meta, shards=shards)

    def restore(self) -> bool:
        """Load the newest checkpoint every rank agrees on; False when there is none."""
        tr = self.tr
        arrays, _ = self.arrays()
        expected = expected_spec({"params": arrays["params"]})
        layout = getattr(tr, "layout", None)
        if layout is not None:
            expected = tr.exchange.whole_spec(arrays)
        with warnings.catch_warnings():
            if not tr.is_root:  # the warning names every rank's reason; say it once
                warnings.simplefilter("ignore", CheckpointWarning)
            ckpt = tr.ckpt.restore(expected=expected)
        if ckpt is None:
            return False
        self._check(ckpt)
        groups = ckpt.arrays
        if layout is not None:  # this rank's slices and its replica's per-rank groups
            groups = parallel_checkpoints.restore_groups(tr.exchange, layout, groups)
        tr.model.load_state_dict({**groups["params"], **groups.get("rng", {})})
        tr.optimizer.load_state_dict({**ckpt.meta["optimizer"], **groups.get("optimizer", {})})
        tr.data.train.load_state_dict(groups.get("pipeline", {}))
        if groups.get("residuals"):
            tr.exchange.load_state_dict(groups["residuals"])
        progress = groups.get("progress", {})
        tr.sums = (float(progress.get("loss_sum", 0.0)), int(progress.get("seen", 0)))
        tr.step, tr.epoch = ckpt.step, ckpt.epoch
        self._apply_new_settings(ckpt)
        self.resumed_from = str(ckpt.path)
        if tr.is_root:
            metrics.truncate_metrics(tr.run_dir, ckpt.epoch)  # each epoch once in metrics.jsonl
            print(f"hpcdist: resumed from {ckpt.path} (epoch {tr.epoch}, step {tr.step})")
        return True

    def _check(self, ckpt) -> None:
        cfg = self.tr.cfg
        saved = ckpt.meta.get("config", {})
        for key in REFUSED:
            if key in saved and saved[key] != getattr(cfg, key):
                raise CheckpointError(
                    f"{ckpt.path} was written with {key}={saved[key]!r}, this run has "
                    f"{key}={getattr(cfg, key)!r}; refusing to resume a different run"
                )
        theirs = ckpt.meta.get("data_fingerprint")
        if theirs != self.tr.data.fingerprint:
            raise CheckpointError(
                f"{ckpt.path} was written for other data (data set fingerprint {theirs}, this "
                f"run's {self.tr.data.fingerprint} in {self.tr.data.directory}); refusing to "
                "resume on a different data set"
            )

    def _apply_new_settings(self, ckpt) -> None:
        changed = build.apply_settings(self.tr.optimizer, self.tr.cfg)
        self.changed_on_resume = {k: {"checkpoint": a, "now": b} for k, (a, b) in changed.items()}
        if changed and self.tr.is_root:
            text = ", ".join(f"{k} {a:g} -> {b:g}" for k, (a, b) in changed.items())
            warnings.warn(
                f"resuming {ckpt.path} with changed optimizer settings ({text}): the new values "
                "apply from here on (recorded in summary.json)",
                UserWarning,
                stacklevel=3,
            )


def _arrays(state: dict) -> dict:
    """A state dict as numpy arrays (scalars become 0-d arrays) for the checkpoint."""
    return {k: np.asarray(to_numpy(v)) for k, v in state.items()}
