"""The nodes of a communicator: who shares a machine (or a pretend node), and one leader each."""

from __future__ import annotations

from mpi4py import MPI

from .. import runtime
from ..guard import Guard


class NodeGroup:
    """The ranks of `comm` on this (pretend) node, and one leader per node.

    Nodes are the machines of `comm` (Split_type(COMM_TYPE_SHARED)), split
    further by the runtime's node index ($HPCDIST_RANKS_PER_NODE), or into
    nodes of `ranks_per_node` consecutive ranks of each machine when given.
    The node's blocking collectives go through `guard` (one deadline).
    """

    def __init__(
        self,
        comm: MPI.Comm,
        *,
        ranks_per_node: int | None = None,
        timeout: float | None = None,
        on_timeout: str = "abort",
    ):
        runtime.init()
        if ranks_per_node is not None and ranks_per_node < 1:
            raise ValueError(f"ranks_per_node must be >= 1 or None, got {ranks_per_node}")
        shared = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
        color = runtime.node_index() if ranks_per_node is None else shared.rank // ranks_per_node
        self.node = shared.Split(color, comm.rank)
        shared.Free()
        leader = self.node.rank == 0
        self.leaders = comm.Split(0 if leader else MPI.UNDEFINED, comm.rank)
        self.guard = Guard(self.node, timeout, name="exchange (node)", on_timeout=on_timeout)
        count = self.leaders.size if leader else None
        self.num_nodes = self.guard.bcast(count, root=0, what="the number of nodes")
        # local rank -> rank in comm
        self.comm_ranks = self.guard.allgather(comm.rank, what="the node's ranks")
        self.size = comm.size
        self.peers = self._peers(comm, leader, timeout, on_timeout)
        # a second communicator each for the gathers of 16-bit sums (pipelined, mpi.Turns)
        between = self.peers if self.peers is not None else self.leaders
        multi = self.num_nodes > 1 and between != MPI.COMM_NULL
        self.gather = between.Dup() if multi else MPI.COMM_NULL

    def _peers(self, comm: MPI.Comm, leader: bool, timeout, on_timeout: str):
        """Local rank j of every node (when all nodes are of one size and there are several).

        Then local rank j sums slice j of a bucket between nodes itself, in parallel with
        the node's other ranks; with uneven nodes the leaders sum whole buckets.
        """
        sizes = None
        if leader:
            guard = Guard(self.leaders, timeout, name="exchange (leaders)", on_timeout=on_timeout)
            sizes = guard.allgather(self.node.size, what="every node's size")
            guard.free()
        sizes = self.guard.bcast(sizes, root=0, what="every node's size from the leader")
        self.uniform = len(set(sizes)) == 1
        peers = comm.Split(self.node.rank if self.uniform else MPI.UNDEFINED, comm.rank)
        if peers != MPI.COMM_NULL and (peers.size == 1 or not self.uniform):
            peers.Free()
            peers = MPI.COMM_NULL
        return None if peers == MPI.COMM_NULL else peers

    def wire_bytes(
        self,
        size: int,
        width: int,
        through_window: bool,
        between_width: int | None = None,
        slice_size: int | None = None,
    ) -> float:
        """Bytes this rank sends for a bucket of `size` elements, `width` bytes each in the
        node and `between_width` (default: `width`) between nodes.

        2(p-1)/p of the bucket over the p ranks of comm (at `width`); for a bucket
        reduced through the window on several nodes, 2(n-1)/n within the node of n ranks,
        plus 2(m-1)/m between the m nodes: of slice j on local rank j where nodes are of
        one size, of the whole bucket on the leader otherwise.
        """
        between = width if between_width is None else between_width
        if not (through_window and self.num_nodes > 1):
            return 2 * (self.size - 1) * size * width / self.size
        n, m = self.node.size, self.num_nodes
        total = 2 * (n - 1) * size * width / n
        if self.peers is not None:  # local rank j sends its slice (`slice_size` elements)
            share = size / n if slice_size is None else slice_size
            total += 2 * (m - 1) * share * between / m
        elif self.node.rank == 0:
            total += 2 * (m - 1) * size * between / m
        return total

    def free(self) -> None:
        self.guard.free()
        for c in (self.node, self.leaders, self.peers or MPI.COMM_NULL, self.gather):
            if c != MPI.COMM_NULL:
                c.Free()
