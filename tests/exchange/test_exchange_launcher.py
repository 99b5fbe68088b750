"""Exchange jobs with their own mpiexec: pretend nodes, error growth, mismatches, deadlines."""

import re

import pytest
from launch import run_mpi

pytestmark = pytest.mark.launcher

HELPER = "tests/exchange/exchange_helper.py"


# Node layouts of 1 and 2 ranks at sizes 2-4 are in-process tests (ranks_per_node=, in
# test_exchange_paths.py); this job checks that $HPCDIST_RANKS_PER_NODE reaches them.
@pytest.mark.parametrize("n, per_node", [(3, 2)])
def test_hierarchical_path_matches_reference(n, per_node):
    """Every path, op and compression on uneven pretend nodes (2 + 1) from the environment,
    against float64, and the wire count by the documented rule."""
    res = run_mpi(n, [HELPER, "check"], timeout=180, env={"HPCDIST_RANKS_PER_NODE": str(per_node)})
    assert res.returncode == 0, res.output[-3000:]
    nodes = -(-n // per_node)
    for r in range(n):
        assert f"rank {r}: OK nodes={nodes}" in res.stdout, res.output[-3000:]


def _errors(n: int) -> dict:
    res = run_mpi(n, [HELPER, "error"], timeout=120)
    assert res.returncode == 0, res.output[-3000:]
    return {k: float(v) for k, v in re.findall(r"ERR (\w+) (\S+)", res.stdout)}


def test_compressed_error_does_not_grow_with_ranks():
    two, four = _errors(2), _errors(4)
    assert two["fp16"] <= 2e-3 and four["fp16"] <= 2e-3, (two, four)
    assert two["bf16"] <= 1.6e-2 and four["bf16"] <= 1.6e-2, (two, four)
    for name in ("fp16", "bf16"):
        assert four[name] <= 1.5 * two[name], (name, two, four)


def test_mismatched_shape_raises_on_every_rank_quickly():
    res = run_mpi(3, [HELPER, "mismatch"], timeout=60)
    assert res.returncode != 0
    assert res.seconds < 10, f"took {res.seconds:.1f} s"
    told = re.findall(
        r"rank (\d) after [\d.]+ s: ranks submitted different tensor lists: "
        r"tensor 1: rank 1 has float32 \(4, 5\), rank 0 has float32 \(4, 4\)",
        res.stdout,
    )
    assert sorted(told) == ["0", "1", "2"], res.output[-3000:]


@pytest.mark.parametrize("check_every", [1, 5])
def test_missing_rank_is_named_at_the_deadline(check_every):
    """AllreduceExchange: a rank that never calls is named after $HPCDIST_EXCHANGE_TIMEOUT."""
    res = run_mpi(
        3,
        [HELPER, "missing", "2", str(check_every)],
        timeout=60,
        env={"HPCDIST_EXCHANGE_TIMEOUT": "3"},
    )
    assert res.returncode != 0
    assert res.seconds < 20, f"took {res.seconds:.1f} s"
    assert "rank 0: step 1 done" in res.stdout
    assert "rank 0: step 2 done" not in res.stdout
    assert "ExchangeTimeoutError" in res.stderr, res.stderr[-3000:]
    assert "timed out after 3 s" in res.stderr
    # the arrival check (every call, or the diagnosis after a timed-out wait) names it
    assert "rank(s) [2] of 3 never arrived" in res.stderr, res.stderr[-3000:]
    if check_every == 5:  # and what the ranks were waiting for in the data phase
        assert "waiting for bucket 0" in res.stderr, res.stderr[-3000:]


@pytest.mark.parametrize("what", ["grouped_allreduce", "broadcast_parameters"])
def test_flat_calls_name_the_absent_rank_at_the_deadline(what):
    """A rank that never makes its second call: the others name it after the deadline
    (3 s) and the job ends within a few seconds more, for the flat API and broadcasts.
    Planted bug it catches: grouped_allreduce or broadcast_parameters waiting with no
    deadline (only AllreduceExchange's was tested by a job of its own)."""
    res = run_mpi(3, [HELPER, "absent", "2", what], timeout=60, env={"HPCDIST_TIMEOUT": "3"})
    assert res.returncode != 0
    assert res.seconds < 12, f"took {res.seconds:.1f} s"
    assert f"rank 0: {what} call 0 done" in res.stdout, res.output[-3000:]
    assert f"rank 0: {what} call 1 done" not in res.stdout
    assert "rank(s) [2] of 3 never arrived within 3 s" in res.stderr, res.stderr[-3000:]
    if what == "broadcast_parameters":
        assert "broadcast from rank 0" in res.stderr, res.stderr[-3000:]
    else:
        assert "grouped_allreduce" in res.stderr, res.stderr[-3000:]
