"""Runtime: rank facts against what MPI itself says, idempotent init, signals."""

import inspect
import os
import signal
import socket
from types import SimpleNamespace

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


def _deliver(flag, name: str) -> None:
    os.kill(os.getpid(), getattr(signal, name))
    for _ in range(1000):  # the Python-level handler runs at a bytecode boundary
        if flag.requested:
            break


def test_ctrl_c_is_a_preemption_and_a_second_one_aborts(monkeypatch):
    aborts = []
    monkeypatch.setattr(runtime, "abort", lambda msg, code, grace: aborts.append((msg, code)))
    flag = runtime.catch_preemption()
    try:
        _deliver(flag, "SIGINT")
        assert flag.requested and flag.signal_name == "SIGINT" and not aborts
        _deliver(flag, "SIGINT")  # at once: mpiexec's forwarded copy of the same Ctrl-C
        assert not aborts
        monkeypatch.setattr(runtime, "SECOND_SIGINT_S", 0.0)
        _deliver(flag, "SIGINT")  # later: the user pressed Ctrl-C again
        assert aborts == [("interrupted (Ctrl-C / SIGINT) again: no checkpoint", 130)]
    finally:
        flag.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # KeyboardInterrupt back


def test_keyboard_interrupt_aborts_instead_of_finalizing(monkeypatch):
    """At size > 1 an uncaught KeyboardInterrupt aborted nothing: Python went on to
    MPI_Finalize and waited there for ranks still in a collective."""
    aborts = []
    monkeypatch.setattr(runtime, "abort", lambda msg, exitcode, grace_s: aborts.append(exitcode))
    monkeypatch.setattr(runtime, "MPI", SimpleNamespace(COMM_WORLD=SimpleNamespace(size=2)))
    runtime._excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert aborts[:1] == [130]


def test_abort_says_the_rank_in_one_write_then_exits(monkeypatch, capfd):
    done = []
    monkeypatch.setattr(runtime.os, "_exit", lambda code: done.append(code))
    abort = inspect.unwrap(runtime.abort)  # tests/conftest.py wraps it to pass the capture
    abort("the test's reason", exitcode=7, grace_s=0)
    assert done == [7]
    err = capfd.readouterr().err
    where = f"rank {MPI.COMM_WORLD.rank} of {MPI.COMM_WORLD.size}"
    assert f"hpcdist: {where} on {socket.gethostname()}: the test's reason\n" in err
    assert err.endswith("hpcdist: aborting the job\n")


def test_abort_gives_the_launcher_a_grace_period_before_it_ends_the_job(monkeypatch, capfd):
    """Planted bug it catches: no grace before MPI_Abort (ranks raced, and 1 abort in 14
    printed nothing: the launcher killed the job before the message was written out)."""
    events = []
    monkeypatch.setattr(runtime.time, "sleep", lambda s: events.append(("sleep", s)))
    monkeypatch.setattr(runtime.os, "_exit", lambda code: events.append(("exit", code)))
    inspect.unwrap(runtime.abort)("the reason", exitcode=5)
    assert runtime.ABORT_GRACE_S >= 0.5
    assert events == [("sleep", runtime.ABORT_GRACE_S), ("exit", 5)]
    assert "the reason" in capfd.readouterr().err
