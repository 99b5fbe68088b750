"""Timelines: span nesting and durations, Chrome trace format, merge of per-rank files."""

import json
import time

import pytest

from hpcdist.guard import Guard
from hpcdist.timeline import (
    CATEGORIES,
    Timeline,
    collect_timelines,
    merge_timelines,
    synchronized_start,
)


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def check_chrome_trace(doc: dict) -> list[dict]:
    """The complete events of `doc`, after checking the Chrome trace format by hand."""
    assert isinstance(doc["traceEvents"], list)
    for e in doc["traceEvents"]:
        assert e["ph"] in ("X", "M") and isinstance(e["name"], str)
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "X":
            assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
            assert isinstance(e["cat"], str)
        else:
            assert e["name"] in ("process_name", "process_sort_index", "thread_name")
    return [e for e in doc["traceEvents"] if e["ph"] == "X"]


def record_step(tl: Timeline, scale: float = 1.0) -> float:
    """One fake training step; returns its wall time in microseconds measured outside."""
    t0 = time.perf_counter_ns()
    with tl.span("step", step=1):
        with tl.span("data_wait"):
            spin(0.001 * scale)
        with tl.span("forward"):
            spin(0.002 * scale)
        with tl.span("backward"):
            spin(0.004 * scale)
        with tl.span("exchange"):
            spin(0.001 * scale)
        with tl.span("optimizer"):
            spin(0.001 * scale)
    return (time.perf_counter_ns() - t0) / 1e3


def test_spans_nest_with_names_order_and_durations(tmp_path):
    tl = Timeline(tmp_path / "rank0.json", rank=0)
    outside_us = record_step(tl)
    path = tl.close()
    events = check_chrome_trace(json.loads(path.read_text()))
    by_name = {e["name"]: e for e in events}
    inner = ["data_wait", "forward", "backward", "exchange", "optimizer"]
    # events are recorded at span exit: inner spans first, the enclosing step last
    assert [e["name"] for e in events] == inner + ["step"]
    step = by_name["step"]
    assert step["args"] == {"step": 1} and step["dur"] <= outside_us
    for a, b in zip(inner, inner[1:], strict=False):
        assert by_name[a]["ts"] + by_name[a]["dur"] <= by_name[b]["ts"]
    for name in inner:  # inside the step span
        e = by_name[name]
        assert step["ts"] <= e["ts"] and e["ts"] + e["dur"] <= step["ts"] + step["dur"]
    # Each span lasts at least as long as the work inside it (an upper bound would be a
    # timed test: oversubscribed ranks get descheduled mid-span).
    for name, spun_us in [("data_wait", 1000), ("forward", 2000), ("backward", 4000)]:
        assert by_name[name]["dur"] >= spun_us
    assert sum(by_name[n]["dur"] for n in inner) <= step["dur"]


def test_categories_get_their_own_tids_and_names(tmp_path):
    tl = Timeline(tmp_path / "t.json", rank=3)
    record_step(tl, scale=0.01)
    with tl.span("h2d copy", cat="transfer"):
        pass
    events = tl.events()
    x = [e for e in events if e["ph"] == "X"]
    cats = {e["name"]: e["cat"] for e in x}
    assert cats["data_wait"] == "data" and cats["forward"] == "forward"
    assert cats["exchange"] == "exchange" and cats["step"] == "other"
    assert cats["h2d copy"] == "transfer"
    tid_of = {e["cat"]: e["tid"] for e in x}
    assert len(set(tid_of.values())) == len(tid_of)  # one row per category
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names == {tid: cat for cat, tid in tid_of.items()}
    assert all(e["pid"] == 3 for e in events)
    assert set(CATEGORIES) >= {"data", "forward", "backward", "exchange", "optimizer"}


def test_disabled_timeline_is_a_cheap_noop(tmp_path):
    tl = Timeline(tmp_path / "off.json", rank=0, enabled=False)
    assert tl.span("forward") is tl.span("backward")  # one shared no-op object
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        with tl.span("forward"):
            pass
    per_span_us = (time.perf_counter() - t0) / n * 1e6
    assert per_span_us < 20.0  # ~0.1 us; generous for oversubscribed CI
    assert tl.events()[2:] == [] and tl.close() is None
    assert not (tmp_path / "off.json").exists()


def test_trace_files_get_every_outputs_mode_and_replace_a_planted_link(tmp_path):
    from hpcdist.rundir import OUTPUT_MODE

    victim = tmp_path / "precious.txt"
    victim.write_text("mine")
    (tmp_path / "t.json").symlink_to(victim)
    tl = Timeline(tmp_path / "t.json", rank=0)
    with tl.span("forward"):
        pass
    path = tl.close()
    assert (path.stat().st_mode & 0o777) == OUTPUT_MODE  # as metrics.jsonl, not mkstemp's 0600
    merged = merge_timelines([path], tmp_path / "merged.json")
    assert (merged.stat().st_mode & 0o777) == OUTPUT_MODE
    assert victim.read_text() == "mine" and not path.is_symlink()


def test_add_interval_timed_elsewhere_and_max_events(tmp_path):
    tl = Timeline(tmp_path / "t.json", rank=0, start_ns=1_000_000, max_events=2)
    tl.add("allreduce bucket 0", 3_000_000, 3_500_000, cat="exchange", bytes=1024)
    tl.add("a", 4_000_000, 4_000_500)
    tl.add("b", 5_000_000, 5_000_500)
    tl.close()
    doc = json.loads((tmp_path / "t.json").read_text())
    x = check_chrome_trace(doc)
    assert x[0]["ts"] == 2000.0 and x[0]["dur"] == 500.0 and x[0]["args"] == {"bytes": 1024}
    assert [e["name"] for e in x] == ["allreduce bucket 0", "a"]
    assert doc["otherData"]["dropped"] == 1


def test_merge_keeps_all_ranks_with_distinct_pids(tmp_path):
    start = time.perf_counter_ns()
    paths = []
    for r in range(3):
        tl = Timeline(tmp_path / f"rank{r}.json", rank=r, start_ns=start)
        record_step(tl, scale=0.01)
        paths.append(tl.close())
    out = merge_timelines(paths, tmp_path / "merged.json")
    x = check_chrome_trace(json.loads(out.read_text()))
    assert len(x) == 3 * 6
    assert {e["pid"] for e in x} == {0, 1, 2}
    for r in range(3):
        assert sorted(e["name"] for e in x if e["pid"] == r) == sorted(
            ["step", "data_wait", "forward", "backward", "exchange", "optimizer"]
        )
    assert [e["ts"] for e in x] == sorted(e["ts"] for e in x)


def test_merge_refuses_duplicate_pids_and_garbage(tmp_path):
    a = Timeline(tmp_path / "a.json", rank=1)
    b = Timeline(tmp_path / "b.json", rank=1)
    a.add("x", a.start_ns, a.start_ns + 1)
    b.add("x", b.start_ns, b.start_ns + 1)
    with pytest.raises(ValueError, match=r"pid 1 appears in both .*a\.json and .*b\.json"):
        merge_timelines([a.close(), b.close()], tmp_path / "m.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not a Chrome trace"):
        merge_timelines([tmp_path / "bad.json"], tmp_path / "m.json")


@pytest.mark.mpi
def test_every_rank_writes_and_rank_0_merges(comm, mpi_tmp_path):
    guard = Guard(comm, timeout=60)
    start = synchronized_start(guard)
    tl = Timeline(mpi_tmp_path / f"timeline-rank{comm.rank}.json", comm.rank, start_ns=start)
    record_step(tl, scale=0.05)
    out = collect_timelines(tl, guard, mpi_tmp_path / "timeline.json")
    if comm.rank != 0:
        assert out is None
        return
    doc = json.loads(out.read_text())
    x = check_chrome_trace(doc)
    assert {e["pid"] for e in x} == set(range(comm.size))
    assert len(x) == 6 * comm.size
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert names == {f"rank {r}" for r in range(comm.size)}
    # a shared origin: every rank's first span starts soon after it, not at some other epoch
    assert all(0 <= e["ts"] < 60e6 for e in x)
