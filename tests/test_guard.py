"""Guarded collectives: results against plain references, a missed deadline names the absent."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from launch import run_mpi

from hpcdist.guard import Guard, check_timeout, default_timeout

PACKAGE = Path(__file__).resolve().parents[1] / "hpcdist"


@pytest.mark.mpi
def test_collectives_give_what_a_serial_computation_gives(comm):
    g = Guard(comm, timeout=60)
    n, r = comm.size, comm.rank
    x = np.arange(5, dtype=np.float64) * (r + 1)
    np.testing.assert_array_equal(g.allreduce(x), np.arange(5) * n * (n + 1) / 2)
    assert g.allreduce(np.array([r]), op="max")[0] == n - 1
    assert g.allreduce(np.array([r]), op="min")[0] == 0
    assert g.bcast({"root": r, "data": [r] * 3}, root=n - 1) == {"root": n - 1, "data": [n - 1] * 3}
    rows = g.gather(("rank", r, "x" * r), root=0)
    assert rows == ([("rank", k, "x" * k) for k in range(n)] if r == 0 else None)
    every = g.allgather(np.full(r + 1, r))
    assert len(every) == n
    for k, a in enumerate(every):
        np.testing.assert_array_equal(a, np.full(k + 1, k))
    g.barrier()
    assert g.calls > 0
    g.free()


@pytest.mark.launcher
@pytest.mark.parametrize("missing", [2, 0])
def test_an_absent_rank_is_named_at_the_deadline(missing):
    res = run_mpi(3, ["tests/scripts/guard_absent.py", str(missing), "2"], timeout=60)
    assert res.returncode != 0 and "unreachable" not in res.stdout
    assert res.seconds < 20, f"took {res.seconds:.1f} s"
    assert "test: timed out after 2 s waiting for the test's barrier" in res.stderr, res.stderr
    if missing:
        assert "rank(s) [2] of 3 never arrived" in res.stderr, res.stderr
    else:
        assert "rank 0, which collects the arrival check, never answered" in res.stderr


def test_timeout_settings(monkeypatch):
    monkeypatch.delenv("HPCDIST_TIMEOUT", raising=False)
    monkeypatch.delenv("HPCDIST_EXCHANGE_TIMEOUT", raising=False)
    assert default_timeout() == 300.0
    monkeypatch.setenv("HPCDIST_EXCHANGE_TIMEOUT", "7")
    assert default_timeout() == 7.0  # the older name is still honoured
    monkeypatch.setenv("HPCDIST_TIMEOUT", "4.5")
    assert default_timeout() == 4.5  # and the new one wins
    monkeypatch.setenv("HPCDIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="HPCDIST_TIMEOUT must be a number of seconds > 0"):
        default_timeout()
    for bad in (0, -1, float("inf"), "x"):
        with pytest.raises(ValueError, match="timeout"):
            check_timeout(bad)


#: Blocking data collectives of mpi4py (both spellings); non-blocking ones are fine (waited
#: under a deadline), communicator constructors are not data collectives.
BLOCKING = {
    "Barrier", "barrier", "Bcast", "bcast", "Gather", "gather", "Gatherv", "Allgather",
    "allgather", "Allgatherv", "Allreduce", "allreduce", "Reduce", "reduce", "Scatter",
    "scatter", "Scatterv", "Alltoall", "alltoall", "Alltoallv", "Reduce_scatter", "Scan", "scan",
}  # fmt: skip


def _bare_collectives(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = ast.unparse(node.func.value)
            # (ShmReducer.reduce is the exchange's own generator, not an MPI call)
            allowed = re.search(r"guard|reducer|^(np|numpy|xp)\b", receiver)
            if node.func.attr in BLOCKING and not allowed:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {receiver}.")
    return found


def test_no_blocking_collective_is_called_bare_in_the_package():
    """Every blocking collective goes through a Guard (guard.py itself and arrival.py, whose one
    allgather runs only once every rank has answered, excepted; and the benchmarks, whose raw
    MPI calls are the baselines they measure against)."""
    own = {"guard.py", "arrival.py"}
    files = [p for p in PACKAGE.rglob("*.py") if p.name not in own and "bench" not in p.parts]
    bare = [hit for p in sorted(files) for hit in _bare_collectives(p)]
    assert not bare, "\n".join(bare)
