"""Record readers (CSV, fixed-length binary, HDF5, in-memory) with keys and a bad-record policy."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

POLICIES = ("raise", "skip", "default", "quarantine")


@dataclass(frozen=True)
class RecordKey:
    """Where a record came from: file and record number (CSV: 1-based line number)."""

    file: str
    record: int

    def __str__(self) -> str:
        return f"{self.file}:{self.record}"


@dataclass
class ReadStats:
    """Counts of one reader (one epoch); `reduced(guard)` sums them over ranks."""

    records: int = 0
    skipped: int = 0
    defaulted: int = 0  # bad records repaired by on_bad="default"
    quarantined: int = 0
    filled: int = 0  # empty fields filled from their record default (any policy)

    def reduced(self, guard) -> dict:
        """Sums over the ranks of `guard` (an hpcdist.guard.Guard; collective: every rank)."""
        names = ("records", "skipped", "defaulted", "quarantined", "filled")
        mine = np.array([getattr(self, k) for k in names], "i8")
        total = guard.allreduce(mine, op="sum", what="reader record counts")
        return dict(zip(names, total.tolist(), strict=True))


class Reader:
    """Base: yields (RecordKey, record) and applies the bad-record policy.

    on_bad: "raise" (DataError naming file and record), "skip" (count it),
    "default" (fill the bad fields with their defaults; a record that has no
    default for a bad field is skipped and counted), "quarantine" (skip, and
    append file, record, reason and the raw text to `quarantine_path`).
    """

    def __init__(self, on_bad: str = "raise", quarantine_path: str | None = None):
        if on_bad not in POLICIES:
            raise ValueError(f"on_bad must be one of {POLICIES}, got {on_bad!r}")
        if on_bad == "quarantine" and not quarantine_path:
            raise ValueError("on_bad='quarantine' needs quarantine_path")
        self.on_bad, self.quarantine_path = on_bad, quarantine_path
        self.stats = ReadStats()

    def _bad(self, key: RecordKey, why: str, raw: str = "") -> None:
        """Handle a record that cannot be used as is (after 'default' had its chance)."""
        if self.on_bad == "raise":
            raise DataError(f"{key}: bad record: {why}")
        self.stats.skipped += 1
        if self.on_bad == "quarantine":
            self.stats.quarantined += 1
            with open(self.quarantine_path, "a") as log:
                log.write(f"{key.file}\t{key.record}\t{why}\t{raw!r}\n")

    def reject(self, key: RecordKey, why: str, raw: str = "") -> None:
        """A record already counted as read turns out bad (a label outside the classes)."""
        self._bad(key, why, raw)
        self.stats.records -= 1

    def __iter__(self):
        return self.records()

    def records(self):
        raise NotImplementedError


class CSVReader(Reader):
    """CSV lines -> tuples, typed by `record_defaults`.

    record_defaults has one entry per column: a value (its type is the
    column's type, and it fills an empty field) or a type (float, int, str):
    a required column, whose empty field makes the record bad. Fields follow
    the csv module's quoting ("8,5" is one field). NaN and inf in a float
    column make the record bad unless `allow_nonfinite`; a line that is not
    UTF-8 is a bad record too (its file and line named, like any other).
    """

    def __init__(
        self,
        paths,
        record_defaults,
        *,
        skip_header_lines: int = 0,
        delimiter: str = ",",
        on_bad="raise",
        quarantine_path=None,
        allow_nonfinite: bool = False,
    ):
        super().__init__(on_bad, quarantine_path)
        self.allow_nonfinite = allow_nonfinite
        self.paths = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.types = [d if isinstance(d, type) else type(d) for d in record_defaults]
        self.defaults = [None if isinstance(d, type) else d for d in record_defaults]
        self.skip_header_lines, self.delimiter = skip_header_lines, delimiter

    def records(self):
        for path in self.paths:
            try:
                f = open(path, "rb")
            except OSError as ex:
                raise DataError(f"{path}: cannot open ({ex})") from ex
            with f:
                for lineno, raw in enumerate(f, start=1):
                    if lineno <= self.skip_header_lines or not raw.strip():
                        continue
                    key = RecordKey(path, lineno)
                    line = decode_line(key, raw, self._bad)
                    rec = None if line is None else self._parse(key, line)
                    if rec is not None:
                        self.stats.records += 1
                        yield RecordKey(path, lineno), rec

    def decode(self, line: str, key: RecordKey | None = None):
        """One line of text -> its typed tuple (TF1's decode_csv), under this reader's policy;
        None when the policy skipped it. `key` names it in errors (default '<line>:1')."""
        rec = self._parse(key or RecordKey("<line>", 1), line.rstrip("\r\n"))
        if rec is not None:
            self.stats.records += 1
        return rec

    def _parse(self, key: RecordKey, line: str):
        fields = next(csv.reader([line], delimiter=self.delimiter), [""])
        n = len(self.types)
        problems = []
        if len(fields) != n:
            problems.append(f"expected {n} fields, got {len(fields)}")
            fields = (fields + [""] * n)[:n]
        values = []
        for i, (text, typ, default) in enumerate(
            zip(fields, self.types, self.defaults, strict=True)
        ):
            text = text.strip()
            if text == "" and default is not None:
                values.append(default)
                self.stats.filled += 1
                continue
            try:
                values.append(_value(text, typ, self.allow_nonfinite))
            except ValueError as ex:
                problems.append(f"field {i + 1}: {ex}")
                values.append(default)
        if not problems:
            return tuple(values)
        if self.on_bad == "default" and all(v is not None for v in values):
            self.stats.defaulted += 1
            return tuple(values)
        self._bad(key, "; ".join(problems), line)
        return None

    def blocks(self, n: int, dtypes):
        """Column arrays of up to n records at a time: (keys, tuple of arrays)."""
        keys, rows = [], []
        for key, rec in self.records():
            keys.append(key)
            rows.append(rec)
            if len(rows) == n:
                yield keys, _columns(rows, dtypes)
                keys, rows = [], []
        if rows:
            yield keys, _columns(rows, dtypes)


def _value(text: str, typ, allow_nonfinite: bool):
    """One field's value; ValueError saying why it cannot be used."""
    if text == "":
        raise ValueError("empty")
    try:
        value = typ(text)
    except ValueError:
        raise ValueError(f"could not parse {text!r} as {typ.__name__}") from None
    if typ is float and not allow_nonfinite and not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value


def decode_line(key: RecordKey, raw: bytes, bad):
    """A line's text without its line end; a line that is not UTF-8 goes to `bad` (None)."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as ex:
        bad(key, f"not UTF-8 text (byte 0x{raw[ex.start]:02x} at column {ex.start + 1})", raw)
        return None


def _columns(rows, dtypes):
    cols = list(zip(*rows, strict=True))
    return tuple(np.asarray(c, dtype=d) for c, d in zip(cols, dtypes, strict=True))


class FixedLengthRecordReader(Reader):
    """Binary files of `header_bytes`, then records of `record_bytes` each, as `dtype`.

    A trailing partial record is a bad record (policy applies).
    """

    def __init__(
        self,
        paths,
        record_bytes: int,
        *,
        header_bytes: int = 0,
        dtype="u1",
        block: int = 4096,
        on_bad="raise",
        quarantine_path=None,
    ):
        super().__init__(on_bad, quarantine_path)
        self.paths = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.record_bytes, self.header_bytes = record_bytes, header_bytes
        self.dtype, self.block = np.dtype(dtype), block
        if record_bytes % self.dtype.itemsize:
            raise ValueError(f"record_bytes {record_bytes} is not a multiple of {self.dtype}")

    def blocks(self):
        """(first record number, array of shape (k, record_bytes / itemsize)) per block."""
        for path in self.paths:
            size = os.path.getsize(path)
            n, extra = divmod(max(0, size - self.header_bytes), self.record_bytes)
            if size < self.header_bytes:
                self._bad(RecordKey(path, 0), f"file of {size} bytes is shorter than its header")
                continue
            data = (
                np.memmap(
                    path,
                    dtype=self.dtype,
                    mode="r",
                    offset=self.header_bytes,
                    shape=(n, self.record_bytes // self.dtype.itemsize),
                )
                if n
                else None
            )
            for start in range(0, n, self.block):
                rows = np.array(data[start : start + self.block])
                self.stats.records += len(rows)
                yield path, start, rows
            if extra:
                self._bad(
                    RecordKey(path, n), f"truncated record: {extra} of {self.record_bytes} bytes"
                )

    def records(self):
        for path, start, rows in self.blocks():
            for i, row in enumerate(rows):
                yield RecordKey(path, start + i), row


class BlockReader(Reader):
    """(key, (features, labels)) records of a RecordSource, read in blocks of `block` rows."""

    def __init__(self, source, block: int = 4096):
        super().__init__()
        self.source, self.block = source, block

    def blocks(self):
        for f, n in enumerate(self.source.counts):
            for start in range(0, n, self.block):
                x, y = self.source.read(f, start, min(n, start + self.block))
                self.stats.records += len(x)
                yield self.source.paths[f], start, (x, y)

    def records(self):
        for path, start, (x, y) in self.blocks():
            for i in range(len(x)):
                yield RecordKey(path, start + i), (x[i], y[i])


def HDF5Reader(paths, features="features", labels="labels", block: int = 4096) -> BlockReader:
    """Reader over HDF5 files' features and labels datasets, in chunked blocks."""
    from .sources import HDF5Source

    return BlockReader(HDF5Source(paths, features=features, labels=labels), block)


def ArrayReader(features, labels, block: int = 4096) -> BlockReader:
    """Reader over in-memory arrays."""
    from .sources import ArraySource

    return BlockReader(ArraySource(features, labels), block)
