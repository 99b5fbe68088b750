"""Random-access record sources for InputPipeline: HDF5 shards and in-memory arrays."""

from __future__ import annotations

import json
import os
import threading

import numpy as np

from ..errors import DataError

MANIFEST = "manifest.json"

#: Set in reader processes (children of a rank must not start MPI).
RANK: int | None = None


def _rank() -> int:
    if RANK is not None:
        return RANK
    from mpi4py import MPI

    return MPI.COMM_WORLD.rank


class RecordSource:
    """Files of (features, labels) records that can be read by row range.

    Subclasses set `paths`, `counts`, `feature_shape`, `feature_dtype`,
    `label_dtype` and implement `read(file_index, start, stop)`.
    """

    paths: list[str]
    counts: list[int]
    feature_shape: tuple
    feature_dtype: np.dtype
    label_dtype: np.dtype

    def read(self, file_index: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def read_into(self, file_index: int, start: int, stop: int, out_x, out_y) -> None:
        """Read rows [start, stop) into the given arrays."""
        out_x[...], out_y[...] = self.read(file_index, start, stop)

    def close(self) -> None:
        pass


class ArraySource(RecordSource):
    """Records already in memory (the seed's "preload the data into a variable")."""

    def __init__(self, features, labels, name: str = "<memory>"):
        self.x, self.y = np.asarray(features), np.asarray(labels)
        if len(self.x) != len(self.y):
            raise ValueError(f"features has {len(self.x)} records, labels {len(self.y)}")
        self.paths, self.counts = [name], [len(self.x)]
        self.feature_shape, self.feature_dtype = self.x.shape[1:], self.x.dtype
        self.label_dtype = self.y.dtype

    def read(self, file_index, start, stop):
        return self.x[start:stop], self.y[start:stop]


def write_manifest(directory: str, shards: list[dict], **facts) -> str:
    """Write manifest.json listing shard paths (relative) and record counts."""
    path = os.path.join(directory, MANIFEST)
    with open(path, "w") as f:
        json.dump({"format": "hpcdist-shards/1", **facts, "shards": shards}, f, indent=1)
    return path


def read_manifest(path: str) -> tuple[list[str], list[int], dict]:
    """(absolute shard paths, record counts, the other facts) from a manifest file."""
    try:
        with open(path) as f:
            doc = json.load(f)
        base = os.path.dirname(os.path.abspath(path))
        paths = [os.path.join(base, s["path"]) for s in doc["shards"]]
        counts = [int(s["records"]) for s in doc["shards"]]
    except (OSError, ValueError, KeyError, TypeError) as ex:
        raise DataError(f"{path}: not a readable shard manifest ({ex})") from ex
    if not paths:
        raise DataError(f"{path}: the manifest lists no shards")
    return paths, counts, doc


def storage_outside(ds, directory: str) -> str | None:
    """A file holding part of dataset `ds` (external storage, virtual sources) that lies
    outside `directory`, or None when all of it is in the shard or beside it."""
    names = [e[0] for e in ds.external or ()]
    if ds.is_virtual:
        names += [v.file_name for v in ds.virtual_sources() if v.file_name != "."]
    root = os.path.realpath(directory)
    for name in map(os.fsdecode, names):
        # HDF5 resolves a relative name against the working directory (external storage)
        # or the shard's directory (virtual sources): both must stay inside.
        for base in (directory, os.getcwd()):
            full = os.path.realpath(os.path.join(base, name))
            if os.path.commonpath([root, full]) != root:
                return full
    return None


class HDF5Source(RecordSource):
    """HDF5 shards, each with a features (N x ...) and a labels (N) dataset.

    `paths` is a list of shard files, a directory holding manifest.json, or a
    manifest path. Record counts come from the manifest when there is one (no
    file is opened until it is read), otherwise from each file. Reads are row
    ranges (chunked, never one row at a time). `rdcc_nbytes` sets HDF5's
    chunk cache; None keeps h5py's 1 MiB, which lets block reads of whole
    chunks bigger than the cache go straight into the output array (measured
    2-2.5x faster here than a 64 MiB cache, docs/data.md). Raise it when
    chunks are small or reads do not line up with chunks.

    `read_into` (the pipeline's path) reads datasets without filters
    straight from the file with os.preadv at the addresses HDF5 reports
    (`rawh5.RawRows`), which does not hold the GIL as h5py does; other
    layouts, or `raw_reads=False`, go through h5py.
    """

    def __init__(
        self,
        paths,
        *,
        features: str = "features",
        labels: str = "labels",
        rdcc_nbytes: int | None = None,
        raw_reads: bool = True,
    ):
        self.features, self.labels, self.rdcc_nbytes = features, labels, rdcc_nbytes
        self.raw_reads = raw_reads
        self._files: dict[int, object] = {}
        self._raw: dict[int, tuple] = {}
        self._lock = threading.Lock()
        self._manifest = None
        if isinstance(paths, (str, os.PathLike)):
            p = os.fspath(paths)
            manifest = os.path.join(p, MANIFEST) if os.path.isdir(p) else p
            self.paths, self.counts, doc = read_manifest(manifest)
            self._manifest = manifest
            self.feature_shape = tuple(doc.get("feature_shape", ()))
            self.feature_dtype = np.dtype(doc.get("feature_dtype", "float32"))
            self.label_dtype = np.dtype(doc.get("label_dtype", "int64"))
        else:
            self.paths = [os.fspath(p) for p in paths]
            self.counts = []
            for i in range(len(self.paths)):
                x, y = self._datasets(i)
                self.counts.append(len(x))
                self.feature_shape, self.feature_dtype = x.shape[1:], x.dtype
                self.label_dtype = y.dtype
        if not self.paths:
            raise ValueError("HDF5Source needs at least one shard")

    def _datasets(self, i: int):
        """The (features, labels) datasets of file i, opened once and kept."""
        with self._lock:
            fresh = i not in self._files
            if fresh:
                self._files[i] = self._open(self.paths[i])
            f = self._files[i]
        try:
            x, y = f[self.features], f[self.labels]
        except KeyError as ex:
            raise DataError(
                f"{self.paths[i]}: no dataset {self.features!r} or {self.labels!r} "
                f"(has {sorted(f.keys())}) [rank {_rank()}]"
            ) from ex
        if fresh:
            self._check_file(i, x, y)
        return x, y

    def _check_file(self, i: int, x, y) -> None:
        """Once per file: the manifest's count is the file's, and no data lives outside."""
        path = self.paths[i]
        if self._manifest is not None and (len(x) != self.counts[i] or len(y) != self.counts[i]):
            raise DataError(
                f"{path}: holds {len(x)} feature rows and {len(y)} labels, but the manifest "
                f"{self._manifest} says {self.counts[i]} records [rank {_rank()}]"
            )
        for ds in (x, y):
            outside = storage_outside(ds, os.path.dirname(os.path.abspath(path)))
            if outside:
                raise DataError(
                    f"{path}: dataset {ds.name!r} keeps its data in {outside}, outside the "
                    f"data directory (HDF5 external storage or a virtual dataset) [rank {_rank()}]"
                )

    def _open(self, path: str):
        import h5py

        try:
            kw = {} if self.rdcc_nbytes is None else {"rdcc_nbytes": self.rdcc_nbytes}
            return h5py.File(path, "r", **kw)
        except (OSError, ValueError) as ex:
            raise DataError(
                f"{path}: not a readable HDF5 file, truncated or corrupt ({ex}) [rank {_rank()}]"
            ) from ex

    def read(self, file_index, start, stop):
        x, y = self._datasets(file_index)
        if stop > len(x) or stop > len(y):
            raise DataError(
                f"{self.paths[file_index]}: records {start}..{stop} asked for, the file holds "
                f"{min(len(x), len(y))} (manifest says {self.counts[file_index]}) [rank {_rank()}]"
            )
        try:
            return x[start:stop], y[start:stop]
        except (OSError, ValueError, RuntimeError) as ex:
            raise DataError(
                f"{self.paths[file_index]}: reading records {start}..{stop} failed ({ex}) "
                f"[rank {_rank()}]"
            ) from ex

    def _raw_rows(self, i: int, x, y) -> tuple:
        """(RawRows or None for features, for labels) of file i, worked out once."""
        with self._lock:
            if i not in self._raw:
                from .rawh5 import RawRows

                fd = os.open(self.paths[i], os.O_RDONLY)
                base = x.file.id.get_create_plist().get_userblock()
                self._raw[i] = (fd, RawRows.of(x, fd, base), RawRows.of(y, fd, base))
            return self._raw[i][1:]

    def raw_layout(self, file_index: int) -> tuple | None:
        """(RawRows of features, RawRows of labels) of a file readable by os.preadv, else None."""
        if not self.raw_reads:
            return None
        x, y = self._datasets(file_index)
        if len(x) < self.counts[file_index] or len(y) < self.counts[file_index]:
            self.read(file_index, 0, self.counts[file_index])  # raises the DataError
        rx, ry = self._raw_rows(file_index, x, y)
        if rx is None or ry is None or x.dtype != self.feature_dtype or y.dtype != self.label_dtype:
            return None
        return rx, ry

    def read_into(self, file_index, start, stop, out_x, out_y):
        x, y = self._datasets(file_index)
        if stop > len(x) or stop > len(y):
            self.read(file_index, start, stop)  # raises the DataError
        if self.raw_reads and x.dtype == out_x.dtype and y.dtype == out_y.dtype:
            rx, ry = self._raw_rows(file_index, x, y)
            try:
                if rx is not None and ry is not None and out_x.flags.c_contiguous:
                    if rx.read_into(start, stop, out_x) and ry.read_into(start, stop, out_y):
                        return
            except OSError as ex:
                raise DataError(
                    f"{self.paths[file_index]}: reading records {start}..{stop} failed ({ex}) "
                    f"[rank {_rank()}]"
                ) from ex
        try:
            x.read_direct(out_x, np.s_[start:stop])
            y.read_direct(out_y, np.s_[start:stop])
        except (OSError, ValueError, RuntimeError, TypeError) as ex:
            raise DataError(
                f"{self.paths[file_index]}: reading records {start}..{stop} failed ({ex}) "
                f"[rank {_rank()}]"
            ) from ex

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_files"], state["_lock"], state["_raw"] = {}, None, {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()
            for fd, _, _ in self._raw.values():
                os.close(fd)
            self._raw.clear()
