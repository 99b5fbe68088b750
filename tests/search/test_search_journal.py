"""The journal: concurrent appends from many processes, torn lines, run locks dropped on SIGKILL."""

import signal
import subprocess
import sys
import time

import pytest
from launch import ROOT, clean_env

from hpcdist.search import journal as jn

APPENDER = """
import sys
from hpcdist.search.journal import Journal
j = Journal(sys.argv[1])
for i in range(int(sys.argv[3])):
    with j.locked() as lk:
        n = len(lk.read())
        lk.append({"event": "report", "trial": sys.argv[2], "epoch": i, "value": n})
"""

HOLDER = """
import sys, time
from hpcdist.search.journal import Journal
fd = Journal(sys.argv[1]).try_claim(sys.argv[2])
print("held" if fd is not None else "busy", flush=True)
time.sleep(60)
"""


def _spawn(code, *args):
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=ROOT,
    )


def test_concurrent_appends_from_four_processes_keep_every_record(tmp_path):
    procs = [_spawn(APPENDER, tmp_path, f"t{p}", 60) for p in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    records = jn.Journal(tmp_path).read()
    assert len(records) == 240
    # each writer saw the journal grow under its lock: the values it read are all distinct
    assert sorted(r["value"] for r in records) == list(range(240))
    for p in range(4):
        assert [r["epoch"] for r in records if r["trial"] == f"t{p}"] == list(range(60))
    assert all(
        line.endswith("}") for line in (tmp_path / jn.JOURNAL_NAME).read_text().split("\n")[:-1]
    )


def test_a_torn_line_is_skipped_and_the_next_record_kept(tmp_path):
    j = jn.Journal(tmp_path)
    with j.locked() as lk:
        lk.append({"event": "start", "trial": "t000"})
    with open(j.path, "a") as f:
        f.write('{"event": "end", "trial": "t0')  # a writer killed mid-line
    with j.locked() as lk:
        lk.append({"event": "start", "trial": "t001"})
    with pytest.warns(UserWarning, match="journal.jsonl:2: skipped a torn"):
        records = j.read()
    assert [r["trial"] for r in records] == ["t000", "t001"]


def test_append_outside_the_lock_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="outside locked"):
        jn.Journal(tmp_path).append({"event": "x"})


def test_a_run_lock_is_held_while_its_process_lives_and_freed_by_sigkill(tmp_path):
    j = jn.Journal(tmp_path)
    holder = _spawn(HOLDER, tmp_path, "t003")
    assert holder.stdout.readline().strip() == "held"
    assert j.running("t003") and j.try_claim("t003") is None
    assert not j.running("t004")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    fd = j.try_claim("t003")
    assert fd is not None
    other = _spawn(HOLDER, tmp_path, "t003")  # and now we hold it against others
    assert other.stdout.readline().strip() == "busy"
    other.kill()
    other.wait()
    jn.release(fd)


def test_states_count_starts_failures_and_the_last_end():
    recs = [
        {"event": "start", "trial": "t0"},
        {"event": "report", "trial": "t0", "epoch": 1, "value": 0.5},
        {"event": "end", "trial": "t0", "status": "failed"},
        {"event": "start", "trial": "t0"},
        {"event": "report", "trial": "t0", "epoch": 1, "value": 0.6},
        {"event": "end", "trial": "t0", "status": "ok"},
        {"event": "start", "trial": "t1"},
        {"event": "end", "trial": "t1", "status": "failed"},
        {"event": "start", "trial": "zz"},
    ]
    st = jn.states(recs, ["t0", "t1", "t2"])
    assert (st["t0"].starts, st["t0"].failures, st["t0"].end["status"]) == (2, 1, "ok")
    assert st["t0"].reports == {1: 0.6} and st["t0"].finished(0)
    assert not st["t1"].finished(1) and st["t1"].finished(0)
    assert st["t2"].starts == 0 and not st["t2"].finished(5)


def test_lock_wait_has_a_deadline_naming_the_file(tmp_path):
    code = (
        "import sys, time\nfrom hpcdist.search.journal import Journal\n"
        "j = Journal(sys.argv[1])\nwith j.locked():\n    print('in', flush=True)\n"
        "    time.sleep(60)\n"
    )
    p = _spawn(code, tmp_path)
    assert p.stdout.readline().strip() == "in"
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=f"lock on {tmp_path}/journal.jsonl"):
        with jn.Journal(tmp_path, lock_timeout=0.5).locked():
            pass
    assert time.monotonic() - start < 5
    p.kill()
    p.wait()
