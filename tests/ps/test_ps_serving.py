"""hpcdist.ps.serve: bad arguments named, and a ps whose model never sets up ends in time."""

import time

import pytest

import hpcdist
from hpcdist import cluster
from hpcdist.errors import CollectiveTimeoutError, ExchangeError
from hpcdist.ps import PsSyncExchange
from hpcdist.ps import transport as tp

pytestmark = pytest.mark.mpi


def _roles():
    hpcdist.init()
    return cluster.Cluster(cluster.ClusterSpec({"ps": 1, "worker": None}))


def test_serve_refuses_nothing_and_a_worker_exchange(comm):
    if comm.size < 2:
        pytest.skip("needs a ps and a worker")
    roles = _roles()
    ex = PsSyncExchange(roles, timeout=5.0)
    with pytest.raises(ValueError, match="at least one"):
        hpcdist.ps.serve()
    if roles.task.job == "worker":
        with pytest.raises(ExchangeError, match="exchange 0 is not a parameter-server exchange"):
            hpcdist.ps.serve(ex)
    comm.Barrier()


def test_a_model_that_never_sends_its_plan_ends_serve_within_the_deadline(comm):
    """Two models on one ps rank: the first sets up, the second's worker 0 never sends a plan.
    serve() must raise within the second's deadline, naming worker 0 and what it waited for."""
    if comm.size < 2:
        pytest.skip("needs a ps and a worker")
    roles = _roles()
    silent = PsSyncExchange(roles, timeout=1.5)
    if roles.task.job == "ps":
        t0 = time.monotonic()
        with pytest.raises(
            CollectiveTimeoutError, match=r"worker 0 \(world rank 1\) to send the shard plan"
        ):
            hpcdist.ps.serve(silent)
        assert time.monotonic() - t0 < 1.5 + 5.0
    comm.Barrier()


def test_a_request_before_the_plan_is_named(comm):
    if comm.size < 2:
        pytest.skip("needs a ps and a worker")
    roles = _roles()
    ex = PsSyncExchange(roles, timeout=10.0)
    if roles.task.job == "ps":
        with pytest.raises(ExchangeError, match="worker 0 sent 'stats' before the shard plan"):
            hpcdist.ps.serve(ex)
    elif roles.task.index == 0:
        req, data = ex.port.isend_object({"op": "stats"}, roles.ranks("ps")[0], tp.TAG_CTRL)
        req.Wait()
    comm.Barrier()
