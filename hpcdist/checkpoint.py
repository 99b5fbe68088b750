"""Atomic, checksummed HDF5 checkpoints with keep-K rotation, sharded state and agreed restore."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from .ckptfile import (
    Arrays,
    Checkpoint,
    Shard,
    Spec,
    assemble,
    check_arrays,
    expected_spec,
    fsync,
    load_checkpoint,
    write_file,
)
from .errors import CheckpointError
from .guard import Guard

#: Groups that differ between ranks; rank 0 gathers them and stores /ranks/<slot>/<group>.
PER_RANK_GROUPS = ("residuals", "pipeline", "rng", "progress")
_NAME_RE = re.compile(r"^ckpt-(\d{10})\.h5$")
_TMP_PREFIX = ".tmp-ckpt-"

__all__ = [
    "PER_RANK_GROUPS",
    "Checkpoint",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointWarning",
    "Shard",
    "expected_spec",
    "load_checkpoint",
]


class CheckpointWarning(UserWarning):
    """A checkpoint was refused and restore fell back to an older one."""


class CheckpointManager:
    """ckpt-<step>.h5 files in `directory`: atomic save, keep the newest `keep`, agreed restore.

    One file per checkpoint, written by rank 0 of the guard's communicator:
    groups not in `per_rank` (params, optimizer, ...) are taken from rank 0,
    as data parallelism keeps them equal, and joined with the `shards` every
    rank holds (a parameter server's or a model-parallel slice, see Shard);
    groups in `per_rank` are gathered to /ranks/<slot>/<group>. `slot` is the
    index this rank's per-rank state is stored under (default: its rank; None
    for a rank that keeps none, such as a parameter server) and `slots` how
    many there are (stored as the file's world size). save(), latest() and
    restore() are collective over the guard's communicator, under its deadline.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        keep: int = 3,
        comm=None,
        *,
        guard: Guard | None = None,
        slot: int | None | str = "rank",
        slots: int | None = None,
        per_rank: tuple[str, ...] = PER_RANK_GROUPS,
    ):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self.guard = guard or Guard(comm, name="checkpoint")
        self.directory, self.keep = Path(directory), keep
        self.slot = self.guard.rank if slot == "rank" else slot
        self.slots = self.guard.size if slots is None else int(slots)
        self.per_rank = tuple(per_rank)
        if self.guard.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.guard.barrier(what=f"rank 0 to create {self.directory}")

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:010d}.h5"

    def local_steps(self) -> list[int]:
        """Steps of the finished checkpoint files this rank sees, oldest first (no MPI)."""
        if not self.directory.is_dir():
            return []
        return sorted(int(m[1]) for p in os.listdir(self.directory) if (m := _NAME_RE.match(p)))

    # --- save ---------------------------------------------------------------
    def save(
        self, step: int, epoch: int, arrays: Arrays, meta: dict | None = None, shards=()
    ) -> Path:
        """Write checkpoint `step` atomically and rotate; every rank gets the path or the error."""
        error, mine, shared = None, None, None
        try:
            if not isinstance(step, (int, np.integer)) or step < 0 or step >= 10**10:
                raise ValueError(f"step must be an int in [0, 1e10), got {step!r}")
            checked = check_arrays(arrays)
            shared = {g: d for g, d in checked.items() if g not in self.per_rank}
            mine = {g: d for g, d in checked.items() if g in self.per_rank}
            shards = list(shards)
            json.dumps(meta or {})  # a TypeError naming the value, here, on the rank that has it
        except (TypeError, ValueError) as exc:
            error = exc
        gathered = self.guard.gather(
            (repr(error) if error else None, self.slot, mine, shards),
            what=f"every rank's part of checkpoint {step}",
        )
        status = None
        if self.guard.rank == 0:
            status = self._write_gathered(int(step), int(epoch), shared, gathered, meta or {})
        status = self.guard.bcast(status, what=f"rank 0 to write checkpoint {step}")
        if error is not None:
            raise error
        if status is not None:
            raise CheckpointError(f"saving {self.path_for(step)} failed on rank 0: {status}")
        return self.path_for(int(step))

    def _write_gathered(self, step, epoch, shared, gathered, meta) -> str | None:
        """Rank 0: check what came, join the shards, write; the failure as a sentence, or None."""
        bad = [f"rank {r}: {e}" for r, (e, _, _, _) in enumerate(gathered) if e]
        if bad:
            return "bad arguments to save(): " + "; ".join(bad)
        slots = sorted(s for _, s, _, _ in gathered if s is not None)
        if slots != list(range(self.slots)):
            return f"per-rank slots {slots} are not 0..{self.slots - 1}"
        per_rank = {s: groups for _, s, groups, _ in gathered if s is not None}
        try:
            joined = assemble([sh for *_, shards in gathered for sh in shards])
            for group, named in joined.items():
                if set(named) & set(shared.get(group, {})):
                    return f"group {group!r} has arrays both shared and sharded"
                shared.setdefault(group, {}).update(named)
            self._write(step, epoch, shared, per_rank, meta)
        except BaseException as exc:  # any failure: tell every rank, keep the old files
            return f"{type(exc).__name__}: {exc}"
        return None

    def _write(self, step: int, epoch: int, shared: Arrays, per_rank: dict, meta: dict) -> None:
        for stale in self.directory.glob(_TMP_PREFIX + "*"):
            stale.unlink(missing_ok=True)  # left by a killed writer; never a checkpoint
        final = self.path_for(step)
        tmp = self.directory / f"{_TMP_PREFIX}{step:010d}-{os.getpid()}.h5"
        parts = [("", shared)] + [(f"ranks/{s}/", g) for s, g in sorted(per_rank.items())]
        try:
            write_file(tmp, step, epoch, self.slots, meta, parts)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync(self.directory, strict=False)  # the rename is atomic even where this cannot
        others = [s for s in self.local_steps() if s != step]  # never the one just written
        for old in others[: max(len(others) - self.keep + 1, 0)]:
            self.path_for(old).unlink(missing_ok=True)

    # --- restore ------------------------------------------------------------
    def _common_steps(self) -> list[int]:
        seen = self.guard.allgather(self.local_steps(), what="the checkpoints every rank sees")
        return sorted(set.intersection(*map(set, seen)), reverse=True)

    def latest(self) -> Path | None:
        """The newest checkpoint file every rank sees (not verified), or None."""
        steps = self._common_steps()
        return self.path_for(steps[0]) if steps else None

    def restore(self, expected: Spec | None = None, step: int | None = None) -> Checkpoint | None:
        """Load the newest checkpoint that every rank can read and verify, or None if there is none.

        A refused file (corrupt, truncated, other world size, arrays unlike
        `expected`, see expected_spec()) gives a CheckpointWarning naming it and the
        reason, and the next older one is tried; if every file is refused,
        CheckpointError. `step` asks for that one step (CheckpointError if absent).
        """
        steps = self._common_steps()
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"no checkpoint {self.path_for(step)} seen by every rank")
            steps = [step]
        refused = []
        for s in steps:
            path = self.path_for(s)
            try:
                ckpt, err = load_checkpoint(path, self.slot, self.slots, expected), None
            except CheckpointError as exc:
                ckpt, err = None, str(exc)
            errors = self.guard.allgather(err, what=f"every rank's verdict on {path.name}")
            if not any(errors):
                return ckpt
            why = "; ".join(f"rank {r}: {e}" for r, e in enumerate(errors) if e)
            warnings.warn(f"refused checkpoint {path}: {why}", CheckpointWarning, stacklevel=2)
            refused.append(why)
        if refused:
            raise CheckpointError(
                f"no usable checkpoint in {self.directory}: " + " | ".join(refused)
            )
        return None
