"""Per-rank Chrome-trace timelines (chrome://tracing, Perfetto) and their merge."""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

from .rundir import replace_file

#: Categories of a training step; each gets its own row (tid) under the rank's pid.
CATEGORIES = ("data", "forward", "backward", "exchange", "optimizer", "eval", "checkpoint")
#: Span names that imply a category when span() is given none.
_NAME_TO_CAT = {
    "data_wait": "data",
    "data": "data",
    "forward": "forward",
    "backward": "backward",
    "exchange": "exchange",
    "allreduce": "exchange",
    "optimizer": "optimizer",
    "eval": "eval",
    "checkpoint": "checkpoint",
}
_OTHER = "other"
_NOOP = nullcontext()


def synchronized_start(guard) -> int:
    """A perf_counter_ns() origin shared by the ranks of `guard` (an hpcdist.guard.Guard):
    everyone reads it after a barrier.

    perf_counter_ns is CLOCK_MONOTONIC on Linux, one clock per machine; reading it
    right after a barrier aligns the ranks to within the barrier's skew (microseconds
    on one node, tens of microseconds between nodes), which is what the merged
    trace's time axis is good to.
    """
    guard.barrier(what="the timeline's common start")
    return time.perf_counter_ns()


class _Span:
    __slots__ = ("tl", "name", "cat", "args", "t0")

    def __init__(self, tl: Timeline, name: str, cat: str, args: dict):
        self.tl, self.name, self.cat, self.args = tl, name, cat, args

    def __enter__(self) -> _Span:
        self.t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc) -> None:
        self.tl.add(self.name, self.t0, time.perf_counter_ns(), self.cat, **self.args)


class Timeline:
    """Records complete ("X") events for one rank and writes them as a Chrome trace at close().

    pid is the rank, tid the category; ts and dur are microseconds since
    `start_ns` (a perf_counter_ns() value; pass synchronized_start(guard) so the
    ranks share an origin). Disabled, span() returns one shared no-op context.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        rank: int,
        *,
        enabled: bool = True,
        start_ns: int | None = None,
        max_events: int = 1_000_000,
    ):
        self.path, self.rank, self.enabled = Path(path), int(rank), bool(enabled)
        self.start_ns = time.perf_counter_ns() if start_ns is None else int(start_ns)
        self.max_events, self.dropped = max_events, 0
        self._events: list[dict] = []
        self._tids: dict[str, int] = {c: i + 1 for i, c in enumerate(CATEGORIES + (_OTHER,))}
        self._closed = False

    def span(self, name: str, cat: str | None = None, **args):
        """`with tl.span("forward"): ...` records the block; `cat` defaults from the name."""
        if not self.enabled:
            return _NOOP
        return _Span(self, name, cat or _NAME_TO_CAT.get(name, _OTHER), args)

    def add(self, name: str, start_ns: int, end_ns: int, cat: str = _OTHER, **args) -> None:
        """Record an interval timed elsewhere (perf_counter_ns values), e.g. on another thread."""
        if not self.enabled or self._closed:
            return
        if len(self._events) >= self.max_events:
            self.dropped += 1
            return
        tid = self._tids.setdefault(cat, len(self._tids) + 1)
        event = {
            "name": name,
            "cat": cat,
            "ph": "X",
            "pid": self.rank,
            "tid": tid,
            "ts": round((start_ns - self.start_ns) / 1e3, 3),
            "dur": round((end_ns - start_ns) / 1e3, 3),
        }
        if args:
            event["args"] = args
        self._events.append(event)

    def events(self) -> list[dict]:
        """The trace events so far: metadata (process/thread names) and the spans."""
        used = {e["tid"] for e in self._events}
        meta = [
            {
                "name": "process_name",
                "ph": "M",
                "pid": self.rank,
                "tid": 0,
                "args": {"name": f"rank {self.rank}"},
            },
            {
                "name": "process_sort_index",
                "ph": "M",
                "pid": self.rank,
                "tid": 0,
                "args": {"sort_index": self.rank},
            },
        ]
        meta += [
            {"name": "thread_name", "ph": "M", "pid": self.rank, "tid": tid, "args": {"name": cat}}
            for cat, tid in self._tids.items()
            if tid in used
        ]
        return meta + self._events

    def close(self) -> Path | None:
        """Write the trace file (atomically) once; returns its path, None when disabled."""
        if not self.enabled:
            return None
        if not self._closed:
            other = {"rank": self.rank, "start_ns": self.start_ns, "dropped": self.dropped}
            _write_json(
                self.path,
                {"traceEvents": self.events(), "displayTimeUnit": "ms", "otherData": other},
            )
            self._closed = True
        return self.path

    def __enter__(self) -> Timeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_json(path: Path, obj: dict) -> None:
    """A new file renamed into place, with every output's mode (rundir.replace_file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    replace_file(path, lambda f: f.write(data))


def merge_timelines(paths: list[str | os.PathLike], out_path: str | os.PathLike) -> Path:
    """Merge per-rank trace files into one; each file's pid must be its own rank's."""
    merged: list[dict] = []
    owner: dict[int, Path] = {}
    for p in map(Path, paths):
        try:
            events = json.loads(p.read_text(encoding="utf-8"))["traceEvents"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{p} is not a Chrome trace file: {exc}") from exc
        for pid in {e.get("pid") for e in events}:
            if pid in owner:
                raise ValueError(f"pid {pid} appears in both {owner[pid]} and {p}")
            owner[pid] = p
        merged += events
    merged.sort(key=lambda e: (e["ph"] != "M", e.get("ts", 0), e.get("pid", 0)))
    out_path = Path(out_path)
    _write_json(out_path, {"traceEvents": merged, "displayTimeUnit": "ms"})
    return out_path


def collect_timelines(timeline: Timeline, guard, out_path: str | os.PathLike) -> Path | None:
    """Close every rank's timeline and merge them on rank 0 of `guard` (collective)."""
    mine = timeline.close()
    paths = guard.gather(str(mine) if mine else None, what="the timeline file names")
    if guard.rank != 0 or not any(paths):
        return None
    return merge_timelines([p for p in paths if p], out_path)
