"""Atomic, checksummed HDF5 checkpoints with keep-K rotation and agreed restore."""

from __future__ import annotations

import json
import os
import re
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .backend import to_numpy
from .errors import CheckpointError

FORMAT_VERSION = 1
#: Groups that differ between ranks; rank 0 gathers them and stores /ranks/<r>/<group>.
PER_RANK_GROUPS = ("residuals", "pipeline", "rng")
_NAME_RE = re.compile(r"^ckpt-(\d{10})\.h5$")
_TMP_PREFIX = ".tmp-ckpt-"
_KINDS = "biufc"

Arrays = dict[str, dict[str, np.ndarray]]
Spec = dict[str, dict[str, tuple[tuple[int, ...], str]]]


class CheckpointWarning(UserWarning):
    """A checkpoint was refused and restore fell back to an older one."""


@dataclass
class Checkpoint:
    """What restore() gives back: this rank's view of one verified checkpoint file."""

    path: Path
    step: int
    epoch: int
    world_size: int
    meta: dict
    arrays: Arrays = field(default_factory=dict)


def expected_spec(arrays: Arrays) -> Spec:
    """{group: {name: (shape, dtype)}} of `arrays`, to pass to restore(expected=...)."""
    return {
        g: {n: (tuple(np.shape(a)), np.dtype(to_numpy(a).dtype).str) for n, a in d.items()}
        for g, d in arrays.items()
    }


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _check_arrays(arrays: Arrays) -> Arrays:
    """Host copies of `arrays`, or ValueError/TypeError naming the bad entry."""
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict of groups, got {type(arrays).__name__}")
    out: Arrays = {}
    for group, named in arrays.items():
        if not isinstance(group, str) or not group or "/" in group or group == "ranks":
            raise ValueError(f"bad group name {group!r} (non-empty, no '/', not 'ranks')")
        if not isinstance(named, dict):
            raise TypeError(f"arrays[{group!r}] must be a dict, got {type(named).__name__}")
        out[group] = {}
        for name, a in named.items():
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(f"bad array name {name!r} in group {group!r}")
            a = to_numpy(a)
            if a.dtype.kind not in _KINDS:
                raise TypeError(f"{group}/{name}: dtype {a.dtype} cannot be checkpointed")
            out[group][name] = a
    return out


def _write_dataset(f: h5py.File, key: str, a: np.ndarray, manifest: dict) -> None:
    f.create_dataset(key, data=a)
    manifest[key] = _crc(a)


def _write_file(tmp: Path, header: dict, parts: list[tuple[str, Arrays]]) -> None:
    """Write every dataset, then the attrs and, last, the complete marker; then fsync."""
    manifest: dict[str, int] = {}
    with h5py.File(tmp, "w") as f:
        for prefix, groups in parts:
            for group, named in groups.items():
                f.require_group(prefix + group)
                for name, a in named.items():
                    _write_dataset(f, f"{prefix}{group}/{name}", a, manifest)
        f.attrs.update(header, format_version=FORMAT_VERSION, created=time.time())
        f.attrs["manifest"] = json.dumps(manifest)
        f.attrs["complete"] = 1
        f.flush()
    _fsync(tmp)


def _fsync(path: Path, strict: bool = True) -> None:
    """fsync a file; for a directory (strict=False) a file system that cannot is let be."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if strict:
            raise


def _read_group(f: h5py.File, key: str, path: Path, manifest: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, ds in f[key].items():
        a = ds[()]
        a = np.asarray(a)
        if _crc(a) != manifest[f"{key}/{name}"]:
            raise CheckpointError(f"checkpoint {path}: checksum mismatch in dataset {key}/{name}")
        out[name] = a
    return out


def _spec_mismatches(arrays: Arrays, expected: Spec) -> list[str]:
    problems = []
    for group, named in expected.items():
        found = arrays.get(group, {})
        for name, (shape, dtype) in named.items():
            want = f"{tuple(shape)} {np.dtype(dtype)}"
            if name not in found:
                problems.append(f"{group}/{name}: expected {want}, missing")
            elif (found[name].shape, found[name].dtype) != (tuple(shape), np.dtype(dtype)):
                a = found[name]
                problems.append(f"{group}/{name}: expected {want}, found {a.shape} {a.dtype}")
        problems += [f"{group}/{n}: in checkpoint, not expected" for n in found if n not in named]
    return problems


def _open_verified(f: h5py.File, path: Path, world_size: int | None) -> dict:
    attrs = dict(f.attrs)
    if attrs.get("complete") != 1:
        raise CheckpointError(f"checkpoint {path} has no 'complete' marker (partial write)")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {attrs.get('format_version')}, "
            f"this hpcdist reads {FORMAT_VERSION}"
        )
    if world_size is not None and int(attrs["world_size"]) != world_size:
        raise CheckpointError(
            f"checkpoint {path} was written by {int(attrs['world_size'])} ranks, "
            f"this job has {world_size}"
        )
    manifest = json.loads(attrs["manifest"])
    present: list[str] = []
    f.visititems(lambda k, o: present.append(k) if isinstance(o, h5py.Dataset) else None)
    if set(present) != set(manifest):
        diff = sorted(set(present) ^ set(manifest))
        raise CheckpointError(f"checkpoint {path}: datasets differ from its manifest: {diff}")
    return attrs | {"manifest": manifest}


def load_checkpoint(
    path: str | os.PathLike,
    rank: int = 0,
    world_size: int | None = None,
    expected: Spec | None = None,
) -> Checkpoint:
    """Read and verify `path` for `rank` (shared groups plus /ranks/<rank>); local, no MPI.

    Raises CheckpointError naming the file for a missing complete marker, another
    format version or world size, a checksum mismatch, a truncated or unreadable
    file, or arrays whose names/shapes/dtypes differ from `expected`.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = _open_verified(f, path, world_size)
            manifest = attrs["manifest"]
            arrays = {g: _read_group(f, g, path, manifest) for g in f if g != "ranks"}
            mine = f"ranks/{rank}"
            if mine in f:
                arrays.update({g: _read_group(f, f"{mine}/{g}", path, manifest) for g in f[mine]})
    except CheckpointError:
        raise
    except Exception as exc:  # truncated or garbled bytes surface as OSError/KeyError/...
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})"
        ) from exc
    problems = _spec_mismatches(arrays, expected or {})
    if problems:
        raise CheckpointError(f"checkpoint {path} does not match the model: " + "; ".join(problems))
    return Checkpoint(
        path,
        int(attrs["step"]),
        int(attrs["epoch"]),
        int(attrs["world_size"]),
        json.loads(attrs["meta"]),
        arrays,
    )


class CheckpointManager:
    """ckpt-<step>.h5 files in `directory`: atomic save, keep the newest `keep`, agreed restore.

    One file per checkpoint, written by rank 0: groups not in `per_rank` (params,
    optimizer, ...) are taken from rank 0, as data parallelism keeps them equal;
    groups in `per_rank` are gathered from every rank to /ranks/<r>/<group>.
    save(), latest() and restore() are collective over `comm`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        keep: int = 3,
        comm=None,
        per_rank: tuple[str, ...] = PER_RANK_GROUPS,
    ):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        if comm is None:
            from . import runtime

            comm = runtime.world_comm()
        self.directory, self.keep, self.comm = Path(directory), keep, comm
        self.per_rank = tuple(per_rank)
        if comm.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
        comm.Barrier()

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:010d}.h5"

    def local_steps(self) -> list[int]:
        """Steps of the finished checkpoint files this rank sees, oldest first (no MPI)."""
        if not self.directory.is_dir():
            return []
        return sorted(int(m[1]) for p in os.listdir(self.directory) if (m := _NAME_RE.match(p)))

    def save(self, step: int, epoch: int, arrays: Arrays, meta: dict | None = None) -> Path:
        """Write checkpoint `step` atomically and rotate; every rank gets the path or the error."""
        error, mine = None, None
        try:
            if not isinstance(step, (int, np.integer)) or step < 0 or step >= 10**10:
                raise ValueError(f"step must be an int in [0, 1e10), got {step!r}")
            mine = _check_arrays(arrays)
            shared = {g: d for g, d in mine.items() if g not in self.per_rank}
            mine = {g: d for g, d in mine.items() if g in self.per_rank}
        except (TypeError, ValueError) as exc:
            error = exc
        gathered = self.comm.gather((repr(error) if error else None, mine), root=0)
        status = None
        if self.comm.rank == 0:
            bad = [f"rank {r}: {e}" for r, (e, _) in enumerate(gathered) if e]
            if bad:
                status = "bad arguments to save(): " + "; ".join(bad)
            else:
                try:
                    self._write(int(step), int(epoch), shared, [g for _, g in gathered], meta or {})
                except BaseException as exc:
                    error, status = exc, f"{type(exc).__name__}: {exc}"
        status = self.comm.bcast(status, root=0)
        if error is not None:
            raise error
        if status is not None:
            raise CheckpointError(f"saving {self.path_for(step)} failed on rank 0: {status}")
        return self.path_for(int(step))

    def _write(self, step: int, epoch: int, shared: Arrays, ranks: list[Arrays], meta: dict):
        for stale in self.directory.glob(_TMP_PREFIX + "*"):
            stale.unlink(missing_ok=True)  # left by a killed writer; never a checkpoint
        final = self.path_for(step)
        tmp = self.directory / f"{_TMP_PREFIX}{step:010d}-{os.getpid()}.h5"
        try:
            header = dict(step=step, epoch=epoch, world_size=self.comm.size)
            header["meta"] = json.dumps(meta, sort_keys=True)
            _write_file(
                tmp, header, [("", shared)] + [(f"ranks/{r}/", g) for r, g in enumerate(ranks)]
            )
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync(self.directory, strict=False)  # the rename is atomic even where this cannot
        others = [s for s in self.local_steps() if s != step]  # never the one just written
        for old in others[: max(len(others) - self.keep + 1, 0)]:
            self.path_for(old).unlink(missing_ok=True)

    def _common_steps(self, comm) -> list[int]:
        seen = comm.allgather(self.local_steps())
        return sorted(set.intersection(*map(set, seen)), reverse=True)

    def latest(self, comm=None) -> Path | None:
        """The newest checkpoint file every rank of `comm` sees (not verified), or None."""
        steps = self._common_steps(comm or self.comm)
        return self.path_for(steps[0]) if steps else None

    def restore(self, expected: Spec | None = None, step: int | None = None) -> Checkpoint | None:
        """Load the newest checkpoint that every rank can read and verify, or None if there is none.

        A refused file (corrupt, truncated, other world size, arrays unlike
        `expected`, see expected_spec()) gives a CheckpointWarning naming it and the
        reason, and the next older one is tried; if every file is refused,
        CheckpointError. `step` asks for that one step (CheckpointError if absent).
        """
        steps = self._common_steps(self.comm)
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"no checkpoint {self.path_for(step)} seen by every rank")
            steps = [step]
        refused = []
        for s in steps:
            path = self.path_for(s)
            try:
                ckpt, err = load_checkpoint(path, self.comm.rank, self.comm.size, expected), None
            except CheckpointError as exc:
                ckpt, err = None, str(exc)
            errors = self.comm.allgather(err)
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
