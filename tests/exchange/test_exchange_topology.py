"""Flat or hierarchical: the measured choice agrees on every rank, forced ones are obeyed."""

import logging

import numpy as np
import pytest
from exchange_data import SHAPES, rank_data, reference, rel_error

import hpcdist
from hpcdist.exchange.topology import FLAT_AT, decide

pytestmark = pytest.mark.mpi


def test_the_rule_goes_flat_only_where_links_rival_memory():
    assert decide(0.6, 10.0) == "hierarchical"  # 5 Gbit/s links, a node's memory
    assert decide(FLAT_AT * 10.0, 10.0) == "flat"
    assert decide(20.0, 10.0) == "flat"


def _run(ex, comm, seed: int) -> float:
    grads = ex.attach([np.zeros(s, np.float32) for s in SHAPES])
    for g, d in zip(grads, rank_data(comm.rank, seed), strict=True):
        g[...] = d
    ex.synchronize()
    return rel_error(grads, reference(comm.size, "average", seed))


def test_auto_measures_the_links_between_nodes_and_every_rank_agrees(comm, caplog):
    """Pretend nodes of one rank: the leaders probe their ring; one choice everywhere."""
    with caplog.at_level(logging.INFO, logger="hpcdist.exchange"):
        with hpcdist.AllreduceExchange(ranks_per_node=1, bucket_bytes=16 << 10) as ex:
            assert _run(ex, comm, 80) <= 1e-6
            topo = ex.topology
            kinds = {ex.paths.kind(b) for b in ex.layout.buckets if b.size * 4 >= ex.small_bytes}
    choices = comm.allgather((topo.choice, topo.link_gbs, topo.memory_gbs))
    assert len(set(choices)) == 1, choices  # the figures too: agreed, not per rank
    if comm.size == 1:
        assert topo.link_gbs is None and kinds == {"local"}
        return
    assert topo.link_gbs > 0 and topo.memory_gbs > 0 and not topo.forced
    assert topo.choice == decide(topo.link_gbs, topo.memory_gbs)
    assert kinds == ({"mpi"} if topo.choice == "flat" else {"shm"})
    if comm.rank == 0:
        assert f"exchange topology: {topo.choice} (links " in caplog.text


@pytest.mark.parametrize("ranks_per_node", [None, 1, 2])
@pytest.mark.parametrize("topology", ["flat", "hierarchical"])
def test_a_forced_topology_is_obeyed_and_matches_float64(comm, topology, ranks_per_node):
    kw = dict(ranks_per_node=ranks_per_node, bucket_bytes=16 << 10, topology=topology)
    with hpcdist.AllreduceExchange(**kw) as ex:
        assert _run(ex, comm, 81) <= 1e-6
        assert ex.topology.forced and ex.topology.choice == topology
        if comm.size > 1:
            big = [b for b in ex.layout.buckets if b.size * 4 >= ex.small_bytes]
            want = "mpi" if topology == "flat" else "shm"
            assert {ex.paths.kind(b) for b in big} == {want}


def test_an_unknown_topology_is_named():
    with pytest.raises(ValueError, match="topology must be one of"):
        hpcdist.AllreduceExchange(topology="ring")
