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

    def wire_bytes(self, size: int, width: int, through_window: bool) -> float:
        """Bytes this rank sends for a bucket of `size` elements at `width` bytes each.

        2(p-1)/p of the bucket over the p ranks of comm; for a bucket reduced
        through the window on several nodes, 2(n-1)/n within the node of n
        ranks, plus, on the node's leader, 2(m-1)/m between the m nodes.
        """
        nbytes = size * width
        if not (through_window and self.num_nodes > 1):
            return 2 * (self.size - 1) * nbytes / self.size
        n, m = self.node.size, self.num_nodes
        total = 2 * (n - 1) * nbytes / n
        if self.node.rank == 0:
            total += 2 * (m - 1) * nbytes / m
        return total

    def free(self) -> None:
        self.guard.free()
        for c in (self.node, self.leaders):
            if c != MPI.COMM_NULL:
                c.Free()
