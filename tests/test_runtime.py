"""Runtime: rank facts against what MPI itself says, idempotent init, signals."""

import os
import signal
import socket

import numpy as np
import pytest
from mpi4py import MPI

import hpcdist
from hpcdist import runtime


@pytest.mark.mpi
def test_rank_facts_match_mpi(comm):
    info = hpcdist.init()
    assert hpcdist.init() is info  # idempotent: same object
    assert (info.rank, info.size) == (comm.rank, comm.size)
    assert (hpcdist.rank(), hpcdist.size()) == (comm.rank, comm.size)
    assert info.host == socket.gethostname() == hpcdist.host()
    # Independent reference: group ranks by host name gathered over the world.
    hosts = comm.allgather(socket.gethostname())
    same_host = [r for r, h in enumerate(hosts) if h == info.host]
    assert info.local_size == len(same_host) == hpcdist.local_size()
    assert info.local_rank == same_host.index(comm.rank) == hpcdist.local_rank()
    assert info.num_nodes == len(set(hosts))
    assert info.node_index == sorted(set(hosts), key=hosts.index).index(info.host)


@pytest.mark.mpi
def test_local_and_leader_communicators(comm):
    hpcdist.init()
    local = runtime.local_comm()
    assert local.size == hpcdist.local_size() and local.rank == hpcdist.local_rank()
    leaders = runtime.leader_comm()
    if hpcdist.local_rank() == 0:
        assert leaders != MPI.COMM_NULL and leaders.size == hpcdist.rank_info().num_nodes
        total = leaders.allreduce(local.size)
        assert total == comm.size
    else:
        assert leaders == MPI.COMM_NULL


@pytest.mark.mpi
def test_rank_info_is_frozen(comm):
    info = hpcdist.init()
    with pytest.raises(AttributeError):
        info.rank = 5


@pytest.mark.mpi
def test_pretend_nodes_split(comm):
    # runtime._node_comm with ranks_per_node=2 on one machine: nodes of 2 ranks.
    node = runtime._node_comm(comm, 2)
    expected = [r for r in range(comm.size) if r // 2 == comm.rank // 2]
    assert node.allgather(comm.rank) == expected
    node.Free()


def test_preemption_flag_set_by_sigusr1():
    flag = runtime.catch_preemption()
    try:
        assert not flag.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        # The Python-level handler runs at the next bytecode boundary.
        for _ in range(1000):
            if flag.requested:
                break
        assert flag.requested and flag.signal_name == "SIGUSR1"
    finally:
        flag.uninstall()


def test_rank_info_singleton_without_launcher():
    info = hpcdist.init()
    assert isinstance(info, hpcdist.RankInfo)
    assert 0 <= info.rank < info.size
    assert np.all(np.array([info.local_rank, info.node_index]) >= 0)
