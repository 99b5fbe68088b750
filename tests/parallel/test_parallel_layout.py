"""2-D layouts: model-parallel groups of consecutive ranks, replicas across them."""

import numpy as np
import pytest

from hpcdist import parallel


def _divisors(n):
    return [k for k in range(1, n + 1) if n % k == 0]


@pytest.mark.mpi
def test_groups_are_consecutive_ranks_and_replicas_hold_the_same_member(comm):
    for mp in _divisors(comm.size):
        layout = parallel.Layout2D(comm, mp, timeout=60)
        assert (layout.member, layout.replica) == (comm.rank % mp, comm.rank // mp)
        assert layout.replicas * layout.mp_size == comm.size
        group = layout.mp_comm.allgather(comm.rank)  # the test checks the split itself
        assert group == list(range(layout.replica * mp, (layout.replica + 1) * mp))
        assert layout.mp_comm.rank == layout.member and layout.dp_comm.rank == layout.replica
        members = layout.dp_comm.allgather(comm.rank % mp)
        assert members == [layout.member] * layout.replicas
        assert layout.mp_guard.size == mp
        layout.free()


@pytest.mark.mpi
def test_a_size_that_does_not_divide_the_ranks_is_refused_by_every_rank(comm):
    bad = [k for k in range(2, comm.size + 2) if comm.size % k]
    with pytest.raises(ValueError, match=f"--mp-size {bad[0]} does not divide the {comm.size}"):
        parallel.Layout2D(comm, bad[0])
    with pytest.raises(ValueError, match="mp_size must be an int >= 1"):
        parallel.Layout2D(comm, 0)
    assert np.all(np.array(comm.allgather(1)) == 1)  # every rank got here: nothing hung
