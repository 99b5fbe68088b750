"""Flat or hierarchical: chosen at attach from the bandwidth measured between the nodes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from ..deadline import Deadline, wait_requests
from ..guard import Guard
from .nodes import NodeGroup

log = logging.getLogger("hpcdist.exchange")

CHOICES = ("auto", "flat", "hierarchical")
#: Bytes each node leader sends its ring neighbour per probe (3 ms on 10 Gbit/s).
PROBE_BYTES = 4 << 20
PROBES = 3
#: Flat (the library's allreduce over every rank) once the links between nodes carry at
#: least this fraction of a node's memory-copy bandwidth: the window's copies then cost
#: about what they save.
FLAT_AT = 0.5


@dataclass(frozen=True)
class Topology:
    """How buckets travel: `choice` "flat" or "hierarchical", and why."""

    choice: str
    link_gbs: float | None = None  # slowest leader's ring bandwidth, GB/s
    memory_gbs: float | None = None  # slowest leader's copy bandwidth, GB/s
    forced: bool = False

    @property
    def flat(self) -> bool:
        return self.choice == "flat"

    def describe(self) -> str:
        if self.forced:
            return f"{self.choice} (forced)"
        if self.link_gbs is None:
            return f"{self.choice} (one node)"
        return (
            f"{self.choice} (links {self.link_gbs:.2f} GB/s, memory {self.memory_gbs:.2f} GB/s, "
            f"flat from {FLAT_AT:g}x)"
        )


def decide(link_gbs: float, memory_gbs: float) -> str:
    """The rule: flat where the links are nearly as fast as the node's memory."""
    return "flat" if link_gbs >= FLAT_AT * memory_gbs else "hierarchical"


def check_setting(setting: str) -> str:
    if setting not in CHOICES:
        raise ValueError(f"topology must be one of {list(CHOICES)}, got {setting!r}")
    return setting


def choose(group: NodeGroup, setting: str, timeout: float, on_timeout: str) -> Topology:
    """The topology for `setting` ("auto" measures; the same answer on every rank), logged
    on the first leader (rank 0 of the exchange's communicator)."""
    topology = _choose(group, check_setting(setting), timeout, on_timeout)
    if group.comm_ranks[0] == 0 and group.node.rank == 0:
        log.info("exchange topology: %s", topology.describe())
    return topology


def _choose(group: NodeGroup, setting: str, timeout: float, on_timeout: str) -> Topology:
    if setting != "auto":
        return Topology(setting, forced=True)
    if group.num_nodes == 1:
        return Topology("hierarchical")
    figures = None
    if group.leaders != MPI.COMM_NULL:
        guard = Guard(group.leaders, timeout, name="exchange (leaders)", on_timeout=on_timeout)
        try:
            mine = np.array([_ring_seconds(group.leaders, timeout), _copy_seconds()])
            figures = guard.allreduce(mine, op="max", what="the link probe's figures").tolist()
        finally:
            guard.free()
    link_s, copy_s = group.guard.bcast(figures, root=0, what="the link probe from the leader")
    link, memory = PROBE_BYTES / link_s / 1e9, PROBE_BYTES / copy_s / 1e9
    return Topology(decide(link, memory), link, memory)


def _ring_seconds(leaders: MPI.Comm, timeout: float) -> float:
    """Best time to send PROBE_BYTES to the next leader while receiving from the previous."""
    out, into = np.ones(PROBE_BYTES, np.uint8), np.empty(PROBE_BYTES, np.uint8)
    right, left = (leaders.rank + 1) % leaders.size, (leaders.rank - 1) % leaders.size
    best = float("inf")
    for _ in range(PROBES + 1):  # the first one sets up the connections
        t = time.perf_counter()
        reqs = [leaders.Irecv(into, source=left, tag=71), leaders.Isend(out, dest=right, tag=71)]
        wait_requests(reqs, Deadline(timeout), "the link probe between node leaders")
        best = min(best, time.perf_counter() - t)
    return best


def _copy_seconds() -> float:
    src, dst = np.ones(PROBE_BYTES, np.uint8), np.empty(PROBE_BYTES, np.uint8)
    best = float("inf")
    for _ in range(PROBES + 1):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return best
