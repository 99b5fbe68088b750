"""Data sets for the main job: the digits scikit-learn ships, or a generated one.

Both are written as train/ and val/ directories of HDF5 shards ("features"
float32 N x D, "labels" int64 N) with a manifest.json each, the layout
`python -m hpcdist.data.convert` produces, and are then read through the data
pipeline like any user's files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .guard import Guard

DIGITS_VERSION = 1  # bump when the digits layout changes, so old caches are rebuilt


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
            f"{where}/manifest.json not found: --data wants a directory with train/ and val/ "
            "shard directories, each made by python -m hpcdist.data.convert"
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
            f"validation fraction of {val_fraction:g}; use more records"
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


def _prepare_once(directory: Path, build, comm, guard: Guard | None) -> Path:
    """Rank 0 builds `directory` if missing while the others wait; errors reach every rank."""
    own = guard is None
    guard = guard or Guard(comm, name="data set")
    error = None
    if guard.rank == 0 and not (directory / "dataset.json").exists():
        try:
            build()
        except Exception as e:  # tell the others instead of leaving them waiting
            error = f"{type(e).__name__}: {e}"
    error = guard.bcast(error, root=0, what=f"rank 0 to build the data set in {directory}")
    if own:
        guard.free()
    if error:
        raise RuntimeError(f"rank 0 could not prepare the data set in {directory}: {error}")
    return directory


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
