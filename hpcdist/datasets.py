"""Data sets for the main job: the digits scikit-learn ships, or a generated one.

Both are written as train/ and val/ directories of HDF5 shards ("features"
float32 N x D, "labels" int64 N) with a manifest.json each, the layout
`python -m hpcdist.data.convert` produces, and are then read through the data
pipeline like any user's files. The cache ($HPCDIST_CACHE) is built once per
job where every node sees it, or once per node where it does not
($HPCDIST_CACHE_SHARED, see _prepare_once).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CollectiveError
from .guard import Guard

DIGITS_VERSION = 1  # bump when the digits layout changes, so old caches are rebuilt
#: 1: the cache is on a file system every node sees (rank 0 builds); 0: node-local (each
#: node's first rank builds its copy); unset or "auto": rank 0 builds, and nodes whose
#: ranks do not see the result build their own.
CACHE_SHARED_ENV = "HPCDIST_CACHE_SHARED"


class DataSetError(CollectiveError, ValueError):
    """The data set cannot be built or used as the settings ask; every rank raises it alike."""


@dataclass(frozen=True)
class Split:
    """One split's shard directory, record count and shapes."""

    directory: Path
    num_records: int
    num_features: int
    num_classes: int


def cache_dir() -> Path:
    """$HPCDIST_CACHE, else $XDG_CACHE_HOME/hpcdist, else ~/.cache/hpcdist."""
    if os.environ.get("HPCDIST_CACHE"):
        return Path(os.environ["HPCDIST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpcdist"


def read_split(directory: str | Path, split: str) -> Split:
    """directory/<split> (shards + manifest.json from python -m hpcdist.data.convert).

    The class count comes from directory/dataset.json when present, else from
    the largest label in the train split.
    """
    from .data import HDF5Source

    base = Path(directory)
    where = base / split
    if not (where / "manifest.json").exists():
        raise FileNotFoundError(
            f"{where}/manifest.json not found on {socket.gethostname()}: --data wants a "
            "directory with train/ and val/ shard directories, each made by python -m "
            "hpcdist.data.convert, on a file system every node of the job sees"
        )
    source = HDF5Source(str(where))
    facts = (
        json.loads((base / "dataset.json").read_text()) if (base / "dataset.json").exists() else {}
    )
    if "num_classes" not in facts:
        train = HDF5Source(str(base / "train"))
        facts["num_classes"] = 1 + max(
            int(train.read(i, 0, n)[1].max()) for i, n in enumerate(train.counts) if n
        )
    return Split(
        where, sum(source.counts), int(np.prod(source.feature_shape)), int(facts["num_classes"])
    )


def fingerprint(directory: str | Path) -> str:
    """A digest of a data set's contents, cheap to take: every manifest, and per shard its size
    and the CRC of its first and last 64 KiB. Two data sets with the same shapes but other
    records (another seed, another source) differ; a copy of the same files does not."""
    base = Path(directory)
    crc = 0
    for manifest in sorted(base.glob("*/manifest.json")) + sorted(base.glob("manifest.json")):
        crc = zlib.crc32(manifest.read_bytes(), crc)
        doc = json.loads(manifest.read_text())
        for shard in doc.get("shards", []):
            path = manifest.parent / shard["path"]
            size = path.stat().st_size
            crc = zlib.crc32(f"{shard['path']}:{size}".encode(), crc)
            with open(path, "rb") as f:
                crc = zlib.crc32(f.read(1 << 16), crc)
                f.seek(max(0, size - (1 << 16)))
                crc = zlib.crc32(f.read(1 << 16), crc)
    return f"{crc:08x}"


def _build(directory: Path, x, y, num_classes: int, val_fraction: float, seed: int, shards: int):
    """Split deterministically, write train/ and val/ shards into a temp dir, then rename it.

    Several jobs (or rank groups of one job) may build the same directory at once: each
    writes its own temp dir, the first rename wins and the others drop theirs.
    """
    from .data.convert import write_shards

    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    if n_val < 1 or len(x) - n_val < 1:
        raise ValueError(
            f"{len(x)} records cannot be split into non-empty train and val sets with a "
            f"validation fraction of {val_fraction:g}; use at least "
            f"{_fewest_records(val_fraction)} records"
        )
    parts = {"val": order[:n_val], "train": order[n_val:]}
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp", dir=directory.parent))
    try:
        for name, idx in parts.items():
            write_shards(
                x[idx], y[idx], str(tmp / name), max(1, min(shards, len(idx))), prefix=name
            )
        facts = {
            "num_features": int(x.shape[1]),
            "num_classes": num_classes,
            "version": DIGITS_VERSION,
        }
        (tmp / "dataset.json").write_text(json.dumps(facts))
        try:
            os.rename(tmp, directory)  # atomic: readers see all of it or none
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (directory / "dataset.json").exists():
                raise  # not "another job built it first": a real failure
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fewest_records(val_fraction: float) -> int:
    """The fewest records that give non-empty train and val sets at `val_fraction`."""
    n = 2
    while int(round(n * val_fraction)) < 1 or n - int(round(n * val_fraction)) < 1:
        n += 1
    return n


def _cache_shared() -> bool | None:
    """$HPCDIST_CACHE_SHARED: 1 (every node sees the cache), 0 (it is node-local), else detect."""
    value = os.environ.get(CACHE_SHARED_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("0", "1"):
        return value == "1"
    raise ValueError(f"${CACHE_SHARED_ENV} must be 0, 1 or auto, got {value!r}")


def _prepare_once(directory: Path, build, comm, guard: Guard | None) -> Path:
    """Build `directory` once where the ranks can see it (collective); errors reach every rank.

    Rank 0 builds it, unless $HPCDIST_CACHE_SHARED=0 says the cache is node-local:
    then the first rank of every node builds its node's copy. Then every rank
    looks; where some do not see it (a node-local cache, detected), each such
    node's first rank builds its own copy, unless $HPCDIST_CACHE_SHARED=1 said
    the cache was shared: that is an error that says what to set. Every copy is
    built from the same inputs, and the trainer compares the data's fingerprint.
    """
    own = guard is None
    guard = guard or Guard(comm, name="data set")
    try:
        shared = _cache_shared()
        from . import runtime

        node = runtime.node_index() if guard.size > 1 else 0  # one rank: nothing to compare
        me = (node, socket.gethostname(), str(directory))
        where = guard.allgather(me, what="every rank's node and data set cache")
        firsts = {}
        for r, (node, _, path) in enumerate(where):
            firsts.setdefault((node, path), r)
        builders = set(firsts.values()) if shared is False else {0}
        _build_on(builders, directory, build, guard)
        missing = _missing(directory, guard)
        if missing and shared is None:  # not shared after all: build once per such node
            _build_on({firsts[where[r][0], where[r][2]] for r in missing}, directory, build, guard)
            missing = _missing(directory, guard)
        if missing:
            raise RuntimeError(_not_seen(directory, missing, where, shared))
    finally:
        if own:
            guard.free()
    return directory


def _build_on(builders: set, directory: Path, build, guard: Guard) -> None:
    """The ranks in `builders` build `directory` if they do not see it; errors go to all.

    A ValueError (settings that cannot give a data set) becomes DataSetError on
    every rank; any other failure a RuntimeError naming the rank.
    """
    error = None
    if guard.rank in builders and not (directory / "dataset.json").exists():
        try:
            build()
        except Exception as e:  # tell the others instead of leaving them waiting
            error = (isinstance(e, ValueError), f"{type(e).__name__}: {e}")
    errors = guard.allgather(error, what=f"rank(s) {sorted(builders)} to build {directory}")
    failed = [(r, e) for r, e in enumerate(errors) if e]
    if failed:
        r, (bad_setting, e) = failed[0]
        if bad_setting:
            raise DataSetError(f"cannot build the data set {directory.name}: {e.split(': ', 1)[1]}")
        raise RuntimeError(f"rank {r} could not prepare the data set in {directory}: {e}")


def _missing(directory: Path, guard: Guard) -> list[int]:
    seen = guard.allgather((directory / "dataset.json").exists(), what="every rank's data check")
    return [r for r, s in enumerate(seen) if not s]


def _not_seen(directory: Path, missing: list, where: list, shared) -> str:
    hosts = sorted({where[r][1] for r in missing})
    text = f"rank(s) {missing} on {', '.join(hosts)} do not see the data set cache {directory}"
    if shared:
        return (
            f"{text} that rank 0 built, although ${CACHE_SHARED_ENV}=1 says the cache is on a "
            f"file system every node shares: point $HPCDIST_CACHE at such a directory, or set "
            f"${CACHE_SHARED_ENV}=0 to build it once per node"
        )
    return f"{text} even after building it there: check that $HPCDIST_CACHE is writable"


def digits(val_fraction: float = 0.2, comm=None, shards: int = 4, guard=None) -> Path:
    """scikit-learn's 8x8 digits (1797 samples, 10 classes) as train/val shards; returns the dir.

    Collective over `comm` (default: the world), or over `guard`'s communicator.
    """
    directory = cache_dir() / f"digits-v{DIGITS_VERSION}-val{val_fraction:g}"

    def build():
        from sklearn.datasets import load_digits

        data = load_digits()
        x = (data.data / 16.0).astype(np.float32)  # pixel values 0..16 -> 0..1
        _build(directory, x, data.target.astype(np.int64), 10, val_fraction, seed=0, shards=shards)

    return _prepare_once(directory, build, comm, guard)


def synthetic(
    n: int, features: int = 784, classes: int = 10, seed: int = 0, comm=None, guard=None
) -> Path:
    """A generated classification set: Gaussian class clusters in `features` dims."""
    directory = cache_dir() / f"synthetic-n{n}-d{features}-c{classes}-s{seed}"

    def build():
        rng = np.random.default_rng(seed)
        centers = rng.normal(0.0, 1.0, (classes, features)).astype(np.float32)
        y = rng.integers(0, classes, n).astype(np.int64)
        x = centers[y] + rng.normal(0.0, 2.0, (n, features)).astype(np.float32)
        _build(directory, x, y, classes, 0.1, seed, shards=max(1, min(16, n // 4096)))

    return _prepare_once(directory, build, comm, guard)
