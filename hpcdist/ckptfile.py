"""One checkpoint file: HDF5 datasets with a CRC each, attributes under a header CRC, shards joined.

A file holds groups of arrays (`params/0.weight`, `optimizer/velocity.0`,
...) and, under `ranks/<slot>/`, the groups that differ between ranks. Its
attributes are `step`, `epoch`, `world_size`, `meta` (JSON), `manifest`
(JSON: dataset path -> CRC32), `format_version`, `created`, `header_crc`
(CRC32 of the others) and, written last, `complete`. Reading verifies every
one of them; anything wrong is a CheckpointError that names the file.

Sharded state: a rank that holds only part of an array (a parameter
server's shard, a model-parallel slice) describes it as a `Shard`;
`assemble()` joins the shards of every rank into whole arrays, so every file
has the same `params/` and `optimizer/` layout whichever exchange wrote it.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .backend import to_numpy
from .errors import CheckpointError

FORMAT_VERSION = 2
_KINDS = "biufc"
#: Attributes covered by `header_crc`, with the type each must have.
_HEADER = {
    "step": int,
    "epoch": int,
    "world_size": int,
    "meta": str,
    "manifest": str,
    "format_version": int,
}

Arrays = dict[str, dict[str, np.ndarray]]
Spec = dict[str, dict[str, tuple[tuple[int, ...], str]]]


@dataclass
class Checkpoint:
    """What restore gives back: this rank's view of one verified checkpoint file."""

    path: Path
    step: int
    epoch: int
    world_size: int
    meta: dict
    arrays: Arrays = field(default_factory=dict)


@dataclass(frozen=True)
class Shard:
    """Part of a whole array: `data` = full[group][name][index], index ((lo, hi), ...) per axis."""

    group: str
    name: str
    shape: tuple[int, ...]
    index: tuple[tuple[int, int], ...]
    data: np.ndarray

    @classmethod
    def whole(cls, group: str, name: str, array) -> Shard:
        """The whole of `array` as one shard."""
        a = to_numpy(array)
        return cls(group, name, a.shape, tuple((0, n) for n in a.shape), a)


def expected_spec(arrays: Arrays) -> Spec:
    """{group: {name: (shape, dtype)}} of `arrays`, to pass to restore(expected=...)."""
    return {
        g: {n: (tuple(np.shape(a)), np.dtype(to_numpy(a).dtype).str) for n, a in d.items()}
        for g, d in arrays.items()
    }


def check_arrays(arrays: Arrays) -> Arrays:
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


def assemble(shards: list[Shard]) -> Arrays:
    """Whole arrays from the shards of every rank; CheckpointError unless each element is
    covered exactly once and the shards of one array agree on its shape and dtype."""
    by_key: dict[tuple[str, str], list[Shard]] = {}
    for s in shards:
        by_key.setdefault((s.group, s.name), []).append(s)
    out: Arrays = {}
    for (group, name), parts in by_key.items():
        shape, dtype = tuple(parts[0].shape), parts[0].data.dtype
        if any(tuple(p.shape) != shape or p.data.dtype != dtype for p in parts):
            raise CheckpointError(f"shards of {group}/{name} disagree on its shape or dtype")
        full = np.zeros(shape, dtype)
        cover = np.zeros(shape, np.uint8)
        for p in parts:
            where = tuple(slice(lo, hi) for lo, hi in p.index)
            if full[where].shape != p.data.shape:
                raise CheckpointError(
                    f"shard {group}/{name}{list(p.index)} holds shape {p.data.shape}"
                )
            full[where] = p.data
            cover[where] += 1
        bad = int((cover != 1).sum())
        if bad:
            raise CheckpointError(
                f"the shards of {group}/{name} {shape} cover {bad} element(s) zero or several times"
            )
        out.setdefault(group, {})[name] = full
    return out


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _header_crc(attrs: dict) -> int:
    return zlib.crc32(json.dumps({k: attrs[k] for k in _HEADER}, sort_keys=True).encode())


def _write_dataset(f: h5py.File, key: str, a: np.ndarray, manifest: dict) -> None:
    f.create_dataset(key, data=a)
    manifest[key] = _crc(a)


def write_file(tmp: Path, step: int, epoch: int, world_size: int, meta: dict, parts) -> None:
    """Write `parts` ([(prefix, Arrays)]), then the attributes and, last, `complete`; fsync."""
    manifest: dict[str, int] = {}
    with h5py.File(tmp, "w") as f:
        for prefix, groups in parts:
            for group, named in groups.items():
                f.require_group(prefix + group)
                for name, a in named.items():
                    _write_dataset(f, f"{prefix}{group}/{name}", a, manifest)
        header = {
            "step": int(step),
            "epoch": int(epoch),
            "world_size": int(world_size),
            "meta": json.dumps(meta, sort_keys=True),
            "manifest": json.dumps(manifest, sort_keys=True),
            "format_version": FORMAT_VERSION,
        }
        f.attrs.update(header, created=time.time(), header_crc=_header_crc(header))
        f.attrs["complete"] = 1
        f.flush()
    fsync(tmp)


def fsync(path: Path, strict: bool = True) -> None:
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


def _attrs(f: h5py.File, path: Path) -> dict:
    """The header attributes, type-checked and under their CRC."""
    raw = dict(f.attrs)
    if raw.get("complete") != 1:
        raise CheckpointError(f"checkpoint {path} has no 'complete' marker (partial write)")
    out = {}
    for key, kind in _HEADER.items():
        value = raw.get(key)
        if kind is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            out[key] = int(value)
        elif kind is str and isinstance(value, (str, bytes)):
            out[key] = value.decode() if isinstance(value, bytes) else value
        else:
            got = "missing" if value is None else type(value).__name__
            raise CheckpointError(f"checkpoint {path}: attribute {key!r} is {got}, not {kind}")
    if out["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {out['format_version']}, "
            f"this hpcdist reads {FORMAT_VERSION}"
        )
    if raw.get("header_crc") != _header_crc(out):
        raise CheckpointError(f"checkpoint {path}: its attributes fail their checksum (corrupt)")
    try:
        out["meta"], out["manifest"] = json.loads(out["meta"]), json.loads(out["manifest"])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: attribute is not JSON ({exc})") from exc
    return out


def _read_group(f: h5py.File, key: str, path: Path, manifest: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, ds in f[key].items():
        a = np.asarray(ds[()])
        if _crc(a) != manifest.get(f"{key}/{name}"):
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


def _read(path: Path, slot: int | None, world_size: int | None) -> tuple[dict, Arrays]:
    with h5py.File(path, "r") as f:
        attrs = _attrs(f, path)
        if world_size is not None and attrs["world_size"] != world_size:
            raise CheckpointError(
                f"checkpoint {path} was written by {attrs['world_size']} ranks, "
                f"this job has {world_size}"
            )
        manifest = attrs["manifest"]
        present: list[str] = []
        f.visititems(lambda k, o: present.append(k) if isinstance(o, h5py.Dataset) else None)
        if set(present) != set(manifest):
            diff = sorted(set(present) ^ set(manifest))
            raise CheckpointError(f"checkpoint {path}: datasets differ from its manifest: {diff}")
        arrays = {g: _read_group(f, g, path, manifest) for g in f if g != "ranks"}
        mine = f"ranks/{slot}"
        if slot is not None and mine in f:
            arrays.update({g: _read_group(f, f"{mine}/{g}", path, manifest) for g in f[mine]})
    return attrs, arrays


def load_checkpoint(
    path: str | os.PathLike,
    rank: int | None = 0,
    world_size: int | None = None,
    expected: Spec | None = None,
) -> Checkpoint:
    """Read and verify `path`: the shared groups plus /ranks/<rank>'s (none for rank=None).

    No MPI. Raises CheckpointError naming the file for a missing complete marker,
    another format version or world size, attributes that fail their checksum or
    have the wrong type, a dataset checksum mismatch, a truncated or unreadable
    file, or arrays whose names/shapes/dtypes differ from `expected`.
    """
    path = Path(path)
    try:
        attrs, arrays = _read(path, rank, world_size)
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
        path, attrs["step"], attrs["epoch"], attrs["world_size"], attrs["meta"], arrays
    )
