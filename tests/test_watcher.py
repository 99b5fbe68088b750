"""hpcdist.watcher: a rank that dies without a word is named once; one that ends normally or
aborts with a message is not (separate mpiexec jobs at 2, 3 and 4 ranks)."""

import re
import time

import pytest
from launch import run_mpi, watchers_of

from hpcdist import watcher

pytestmark = pytest.mark.launcher

#: Every rank starts hpcdist and meets the others; then one of them ends as told.
JOB = """
import os, signal, sys, time
from mpi4py import MPI
import hpcdist
info = hpcdist.init()
MPI.COMM_WORLD.Barrier()
how, who, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(f"{out}/pid.{info.rank}", "w") as f:  # stdout can be lost when the rank is killed
    f.write(str(os.getpid()))
MPI.COMM_WORLD.Barrier()
if info.rank == who and how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if info.rank == who and how == "abort":
    hpcdist.runtime.abort("told to abort")
if how != "exit":
    time.sleep(60)
"""
NAMED = re.compile(r"hpcdist: rank (\d+) of (\d+) \(pid (\d+) on \S+\) ended at [\d:.]+ without.*")
UNSURE = "woke too late to tell"


def pids(out) -> dict[int, int]:
    return {int(p.suffix[1:]): int(p.read_text()) for p in out.glob("pid.*")}


@pytest.mark.parametrize("n, who", [(2, 0), (3, 1), (4, 3)])
def test_a_rank_killed_is_named_once(n, who, tmp_path):
    """One line; it names the killed rank and its pid, unless its watcher woke after the
    launcher had killed the others (then it says it cannot be sure). Planted bugs it catches:
    every watcher speaking (n lines), none, a watcher sure of itself without checking that
    the other ranks were still alive (one the launcher killed was named as the first)."""
    res = run_mpi(n, ["-c", JOB, "kill", str(who), str(tmp_path)], timeout=60)
    assert res.returncode != 0
    lines = [m.group(0) for m in NAMED.finditer(res.stderr)]
    assert len(lines) == 1, res.output[-3000:]
    rank, size, pid = NAMED.match(lines[0]).groups()
    assert size == str(n) and pid == str(pids(tmp_path)[int(rank)])
    assert rank == str(who) or UNSURE in lines[0], lines[0]


@pytest.mark.parametrize("how", ["abort", "exit"])
def test_an_abort_or_a_normal_end_leaves_the_watchers_quiet(how, tmp_path):
    """And the watchers leave. Planted bugs it catches: runtime.abort not claiming the end
    (the watchers of the ranks MPI_Abort kills then name one of them); a watcher that waits
    for its rank's mutex before its pipe (the interpreter unmaps the mutex at exit, the
    kernel cannot free it, and the watcher stayed forever)."""
    res = run_mpi(3, ["-c", JOB, how, "1", str(tmp_path)], timeout=60)
    assert res.returncode == (1 if how == "abort" else 0), res.output[-3000:]
    assert "without a word" not in res.stderr, res.stderr[-3000:]
    assert ("told to abort" in res.stderr) == (how == "abort")
    deadline = time.monotonic() + watcher.HOLD_S + 5  # the claim's holder leaves last
    while watchers_of(pids(tmp_path).values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not watchers_of(pids(tmp_path).values())


def test_no_watcher_when_turned_off():
    """A rank's children: its watcher, none with HPCDIST_WATCHER=0."""
    code = (
        "import os, hpcdist; hpcdist.init(); pid = os.getpid()\n"
        "print(open(f'/proc/{pid}/task/{pid}/children').read().strip() or 'none')"
    )
    res = run_mpi(2, ["-c", code], timeout=60, env={"HPCDIST_WATCHER": "0"})
    assert res.returncode == 0 and res.stdout.count("none") == 2, res.output  # lines can mix
    res = run_mpi(2, ["-c", code], timeout=60)
    assert res.returncode == 0 and "none" not in res.stdout, res.output
