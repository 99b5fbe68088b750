"""The search's state: an append-only JSON-lines journal in the search directory, file-locked.

Every change is one appended line, written under an exclusive `fcntl.flock`
on the journal, so any number of processes (the group roots of one job, the
tasks of a SLURM array) can share it. Events:

    {"event": "plan",   "trials": [...], "settings": {...}}     first line, once
    {"event": "start",  "trial": "t003", "owner": "host:pid"}
    {"event": "report", "trial": "t003", "epoch": 2, "value": 0.91}
    {"event": "end",    "trial": "t003", "status": "ok"|"failed"|"pruned", ...}

Who runs a trial is not in the journal but in a second lock: the process
running trial t holds an exclusive flock on locks/t.lock, which the kernel
drops when that process dies (SIGKILL included). So a trial that was started
and has no end, and whose lock is free, was killed: it is taken again and
continues from its checkpoints; no trial is left "running" forever.
A line torn by a kill mid-write is ended with a newline by the next writer
and skipped (with a warning) by readers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..deadline import Deadline

JOURNAL_NAME = "journal.jsonl"
#: Seconds a process waits for the journal's lock before it gives up, naming the file.
LOCK_TIMEOUT_S = 120.0
FINAL = ("ok", "pruned")


@dataclass
class TrialState:
    """One trial as the journal tells it."""

    trial: str
    starts: int = 0
    failures: int = 0
    end: dict | None = None
    reports: dict = field(default_factory=dict)  # epoch -> value (the last one reported)

    def finished(self, max_retries: int) -> bool:
        """Ended for good: ok or pruned, or failed more than max_retries + 0 times over."""
        if self.end is None:
            return False
        return self.end["status"] in FINAL or self.failures > max_retries


class Journal:
    """The journal of the search in `directory` (created if needed)."""

    def __init__(self, directory: str | os.PathLike, lock_timeout: float = LOCK_TIMEOUT_S):
        self.directory = Path(directory)
        self.path = self.directory / JOURNAL_NAME
        self.locks = self.directory / "locks"
        self.lock_timeout = lock_timeout
        self.locks.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None  # open while locked()

    @contextlib.contextmanager
    def locked(self):
        """Hold the journal's exclusive lock: read() and append() see and make one history."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            _flock(fd, self.path, self.lock_timeout)
            self._fd = fd
            yield self
        finally:
            self._fd = None
            os.close(fd)  # closing drops the lock

    def read(self) -> list[dict]:
        """Every record, in order (a torn or garbled line skipped with a warning)."""
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        records = []
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                warnings.warn(f"{self.path}:{n}: skipped a torn or garbled line", stacklevel=2)
        return records

    def append(self, record: dict) -> None:
        """Append one record (only inside locked())."""
        if self._fd is None:
            raise RuntimeError(f"{self.path}: append() outside locked()")
        line = json.dumps({**record, "at": round(time.time(), 3)}, allow_nan=True) + "\n"
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            line = "\n" + line  # end a line torn by a killed writer
        os.write(self._fd, line.encode())
        os.fsync(self._fd)

    # --- who runs what -------------------------------------------------------
    def try_claim(self, trial: str) -> int | None:
        """The fd holding trial's run lock, or None when another process holds it."""
        fd = os.open(self.locks / f"{trial}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def running(self, trial: str) -> bool:
        """Whether some live process holds trial's run lock."""
        fd = self.try_claim(trial)
        if fd is None:
            return True
        release(fd)
        return False


def release(fd: int | None) -> None:
    """Give up a run lock from try_claim()."""
    if fd is not None:
        os.close(fd)


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def states(records: list[dict], trials: list[str]) -> dict[str, TrialState]:
    """{trial: TrialState} from the journal's records, for every trial of the plan."""
    out = {t: TrialState(t) for t in trials}
    for rec in records:
        st = out.get(rec.get("trial"))
        if st is None:
            continue
        event = rec.get("event")
        if event == "start":
            st.starts += 1
        elif event == "report":
            st.reports[int(rec["epoch"])] = rec["value"]
        elif event == "end":
            st.end = rec
            st.failures += rec["status"] == "failed"
    return out


def _flock(fd: int, path: Path, timeout: float) -> None:
    deadline = Deadline(timeout)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline.expired():
                raise TimeoutError(
                    f"pid {os.getpid()} waited {timeout:g} s for the lock on {path}; another "
                    "process holds it (a stuck search task?)"
                ) from None
            time.sleep(0.01)
