"""Ranks that submit different lists: every rank raises ExchangeError naming the difference.

The last rank differs from the others in one way at a time (dtype, count, order,
compression), through the flat API (whose check digests safety.signature) and
through AllreduceExchange.attach (which digests safety.describe). Planted bug
caught: a list fingerprint that ignores dtype (or count, or order), after which the
ranks would reduce differently laid-out buffers into each other.
"""

import numpy as np
import pytest

import hpcdist
from hpcdist.errors import ExchangeError

pytestmark = pytest.mark.mpi(min_size=2)

A, B = ((10,), np.float32), ((4, 4), np.float32)

#: case -> (everyone's list, the last rank's list, what the error names)
CASES = {
    "dtype": ([A, B], [((10,), np.float64), B], r"tensor 0: rank {r} has float64 \(10,\), "),
    "count": ([A, B], [A, B, B], r"rank {r} has \['op=average compression=none count=3'\]"),
    "order": ([A, B], [B, A], r"tensor 0: rank {r} has float32 \(4, 4\), rank 0 has float32"),
}


def _arrays(spec):
    return [np.ones(shape, dtype) for shape, dtype in spec]


def _mine(comm, case):
    common, odd, pattern = CASES[case]
    last = comm.size - 1
    return _arrays(odd if comm.rank == last else common), pattern.format(r=last)


@pytest.mark.parametrize("case", list(CASES))
def test_flat_api_mismatch_raises_on_every_rank(comm, case):
    """Planted bug it catches: a list fingerprint (safety.signature) that ignores dtype,
    count or order."""
    arrays, pattern = _mine(comm, case)
    with pytest.raises(ExchangeError, match=pattern):
        hpcdist.grouped_allreduce(arrays, timeout=10)
    ok = hpcdist.grouped_allreduce([np.ones(3, np.float32)], op="sum")  # still usable after
    np.testing.assert_array_equal(ok[0], np.full(3, comm.size))


@pytest.mark.parametrize("case", list(CASES))
def test_exchange_attach_mismatch_raises_on_every_rank(comm, case):
    """Planted bug it catches: the attach digest (safety.describe) ignoring dtype, count
    or order."""
    arrays, pattern = _mine(comm, case)
    with hpcdist.AllreduceExchange(timeout=10) as ex:
        with pytest.raises(ExchangeError, match=pattern):
            ex.attach(arrays)


def test_compression_mismatch_raises_on_every_rank(comm):
    comp = "bf16" if comm.rank == comm.size - 1 else "none"
    with pytest.raises(ExchangeError, match=f"rank {comm.size - 1} has .*compression=bf16"):
        hpcdist.grouped_allreduce(_arrays([A]), compression=comp, timeout=10)


def test_broadcast_mismatch_raises_on_every_rank(comm):
    dtype = np.float64 if comm.rank == comm.size - 1 else np.float32
    with pytest.raises(ExchangeError, match=rf"tensor 0: rank {comm.size - 1} has float64"):
        hpcdist.broadcast_parameters([np.ones(5, dtype)], root=0, timeout=10)
