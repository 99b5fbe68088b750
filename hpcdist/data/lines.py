"""TF1's file pipeline: a filename queue, a line reader fed by it, decode_csv with defaults.

    names = filename_queue(["a.csv", "b.csv"])            # string_input_producer, closed
    reader = LineReader(skip_header_lines=1)             # TextLineReader
    key, line = reader.read(names)                       # "a.csv:2", "1., 2., 0"
    x1, x2, y = decode_csv(line, [[-1.0], [-1.0], [-1]])  # an empty field takes its default

`LineReader.read` raises OutOfRangeError once the filename queue is closed and
every file has been read, as TF does, so a QueueRunner built on it ends cleanly.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import DataError
from .queues import FIFOQueue
from .readers import CSVReader, RecordKey, decode_line


def filename_queue(names, *, num_epochs: int = 1, shuffle: bool = False, seed=None) -> FIFOQueue:
    """A closed FIFOQueue of file names (str), `num_epochs` passes, each shuffled if asked."""
    names = [str(n) for n in names]
    if not names or num_epochs < 1:
        raise ValueError(f"need file names and num_epochs >= 1, got {names!r}, {num_epochs}")
    rng = np.random.default_rng(seed)
    order = []
    for _ in range(num_epochs):
        order += [names[i] for i in (rng.permutation(len(names)) if shuffle else range(len(names)))]
    q = FIFOQueue(len(order), [str], [()], name="filename_queue")
    q.enqueue_many(order)
    q.close()
    return q


class LineReader:
    """Lines of the files named by a queue: read(queue) -> (key 'file:line', text).

    Blank lines and the first `skip_header_lines` of each file are skipped. One
    reader may serve several threads (each read is under a lock).
    """

    def __init__(self, *, skip_header_lines: int = 0):
        self.skip_header_lines = skip_header_lines
        self._lock = threading.Lock()
        self._file = None
        self._name, self._lineno = "", 0

    def read(self, queue, timeout: float | None = None) -> tuple[str, str]:
        with self._lock:
            while True:
                if self._file is None:
                    self._open(queue.dequeue(timeout=timeout))  # OutOfRangeError at the end
                raw = self._file.readline()
                if not raw:
                    self._file.close()
                    self._file = None
                    continue
                self._lineno += 1
                if self._lineno <= self.skip_header_lines or not raw.strip():
                    continue
                key = RecordKey(self._name, self._lineno)
                return str(key), decode_line(key, raw, _refuse)

    def _open(self, name) -> None:
        self._name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            self._file = open(self._name, "rb")
        except OSError as ex:
            raise DataError(f"{self._name}: cannot open ({ex})") from ex
        self._lineno = 0


def _refuse(key, why, raw=b"") -> None:
    raise DataError(f"{key}: bad record: {why}")


def decode_csv(line: str, record_defaults, *, delimiter: str = ",", key: str = "", stats=None):
    """TF1's decode_csv: the typed fields of one line; an empty field takes its default.

    record_defaults: one entry per column, TF's [[-1.0], [-1.0], [-1]] or plain
    values, or a type (float, int, str) for a required column. A field that
    does not parse raises DataError naming `key`. `stats` (a ReadStats) counts
    the fields filled from defaults.
    """
    one = (list, tuple)
    defaults = [d[0] if isinstance(d, one) and len(d) == 1 else d for d in record_defaults]
    decoder = CSVReader([], defaults, delimiter=delimiter)
    file, _, lineno = key.rpartition(":")
    rec = decoder.decode(line, RecordKey(file or "<line>", int(lineno) if lineno.isdigit() else 1))
    if stats is not None:
        stats.filled += decoder.stats.filled
        stats.records += 1
    return rec
