"""Node reduction in an MPI-3 shared window (each rank sums a slice); leaders go between nodes."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .. import casts
from ..compression import Compression, Compressor
from ..guard import Guard
from .buckets import ALIGN_BYTES, Bucket, BucketLayout, align
from .mpi import MpiSum, Turns
from .nodes import NodeGroup
from .safety import is_finite_sum

#: Elements summed per pass (1 MiB of float32): the partial sum stays in cache.
CHUNK = 1 << 18

# Flag kinds in the control block: flags[bucket, kind, local rank] = call number.
ARRIVED, STAGED, REDUCED, FINAL, NONFINITE, LEADER = range(6)
PEERS = 6  # a wait kind only: local rank j summing slice j with the other nodes
_KIND_NAMES = [
    "arrive",
    "stage its node sum",
    "reduce its slice",
    "finish",
    "",
    "finish the sum between nodes",
]


def _sum_into(out: np.ndarray, parts: list) -> np.ndarray:
    """out = parts[0] + parts[1] + ..., summed in rank order (the same on every run)."""
    if len(parts) == 1:
        out[...] = parts[0]
        return out
    np.add(parts[0], parts[1], out=out)
    for p in parts[2:]:
        np.add(out, p, out=out)
    return out


class SharedRegions:
    """One shared window: a byte region per local rank, and a control block on rank 0."""

    def __init__(self, node: MPI.Comm, nbytes: int, slots: int, guard: Guard):
        self.n, self.guard = node.size, guard
        self.flag_shape = (slots, 6, self.n)
        self.scale_shape = (slots, 2, self.n)  # contribution scale, result scale
        ctrl = 8 * (int(np.prod(self.flag_shape)) + int(np.prod(self.scale_shape)))
        mine = align(max(nbytes, 1)) + (ctrl if node.rank == 0 else 0)
        info = MPI.Info.Create()
        info.Set("alloc_shared_noncontig", "true")
        self.win = MPI.Win.Allocate_shared(mine, 1, info, comm=node)
        info.Free()
        self.regions = []
        for r in range(self.n):
            buf, _ = self.win.Shared_query(r)
            self.regions.append(np.frombuffer(buf, dtype=np.uint8))
        tail = self.regions[0][align(max(nbytes, 1)) :]
        nflags = int(np.prod(self.flag_shape))
        self.flags = tail[: 8 * nflags].view(np.int64).reshape(self.flag_shape)
        self.scales = tail[8 * nflags : ctrl].view(np.float64).reshape(self.scale_shape)
        if node.rank == 0:
            self.flags[...] = 0
            self.scales[...] = 1.0
        self.regions = [r[:nbytes] for r in self.regions]
        self.win.Lock_all(MPI.MODE_NOCHECK)
        guard.barrier("the node's shared window to be set up")

    def fence(self) -> None:
        """Memory barrier between our writes and the flags the others read."""
        self.win.Sync()

    def free(self) -> None:
        """Free the window (collective): a guarded barrier first, so Win.Free cannot hang."""
        self.guard.barrier("the node's ranks to close the exchange's window")
        self.win.Unlock_all()
        self.win.Free()


class ShmReducer:
    """Sums buckets of gradients that live in the shared regions, in place.

    Rank j of the node sums slice j of the bucket over all local regions, and
    writes the result back to every region. Between nodes of one size, rank j
    sums its slice with local rank j of the other nodes (MpiSum over
    group.peers); with uneven nodes the slices are staged in local rank 0's
    region, the leaders sum whole buckets, and rank j copies slice j back out.
    The 16-bit `comp` is used between nodes; within the node only when
    `within_node` (then contributions go on a 16-bit wire area, are decoded and
    summed in the gradient's precision, and the result travels back in 16 bits).
    """

    def __init__(
        self,
        group: NodeGroup,
        layout: BucketLayout,
        comp: Compressor,
        slots: int,
        *,
        within_node: bool = True,
    ):
        self.group, self.layout, self.comp = group, layout, comp
        self.node_comp = comp if within_node else Compression.none
        self.me, self.n = group.node.rank, group.node.size
        self.grad_bytes = align(layout.nbytes)
        width = self.node_comp.wire_itemsize
        wire = layout.wire_nbytes(width) if width else 0
        self.shared = SharedRegions(group.node, self.grad_bytes + wire, slots, group.guard)
        self.flags, self.scales = self.shared.flags, self.shared.scales
        self.turns = Turns()  # posting order of the leaders' sums

    def compressed(self, s: int) -> bool:
        """Slab s travels in 16 bits within the node (floating slabs, 16 bits forced there)."""
        return self.node_comp.wire_itemsize is not None and self.layout.slabs[s].dtype.kind == "f"

    def grads(self, r: int, s: int) -> np.ndarray:
        return self.layout.slab_view(self.shared.regions[r][: self.grad_bytes], s)

    def wire(self, r: int, s: int) -> np.ndarray:
        dtype = self.comp.wire_dtype(self.layout.slabs[s].dtype)
        return self.layout.wire_view(self.shared.regions[r][self.grad_bytes :], s, dtype)

    def my_slice(self, b: Bucket, j: int | None = None) -> tuple[int, int]:
        j = self.me if j is None else j
        step = align(-(-b.size // self.n) * 8, ALIGN_BYTES) // 8
        return min(b.start + j * step, b.stop), min(b.start + (j + 1) * step, b.stop)

    def new_call(self, order: list[int]) -> None:
        """A new exchange call will reduce these buckets here, in this order."""
        self.turns.reset(order)

    def _set(self, b: Bucket, kind: int, call: int, col: int | None = None) -> None:
        self.shared.fence()
        self.flags[b.index, kind, self.me if col is None else col] = call

    def wait_flags(self, b: Bucket, kind: int, call: int, cols=None):
        """Yield (what, missing local ranks) until the flags of `cols` reach `call`."""
        flags = self.flags[b.index, kind]
        cols = range(self.n) if cols is None else cols
        while (flags < call).any() if len(cols) == self.n else any(flags[i] < call for i in cols):
            yield kind, b, [i for i in cols if flags[i] < call]
        self.shared.fence()

    def describe(self, wait) -> str:
        kind, b, missing = wait
        ranks = [self.group.comm_ranks[i] for i in missing]
        if kind == LEADER and not ranks:
            return f"bucket {b.index}: the sum between node leaders (on other nodes)"
        if kind == PEERS:
            return f"bucket {b.index}: the sum of this rank's slice with the other nodes"
        return f"bucket {b.index}: rank(s) {ranks} to {_KIND_NAMES[kind]} (node-local wait)"

    def reduce(self, b: Bucket, call: int, inv: float, residual=None, contributed=False):
        """Generator: reduce bucket b for exchange call `call`; yields while waiting."""
        s = b.slab
        if self.compressed(s) and not contributed:
            if self.me == 0:
                yield from self.wait_flags(b, FINAL, call - 1)
            self.contribute(b, residual)
        self._set(b, ARRIVED, call)
        yield from self.wait_flags(b, ARRIVED, call)
        lo, hi = self.my_slice(b)
        if self.group.num_nodes == 1 and not self.compressed(s):
            if not self._sum_in_place(s, lo, hi, inv):  # the fast path: one pass, in cache
                self._set(b, NONFINITE, call)
        else:
            acc = self._sum_slice(b, lo, hi)
            if self.group.num_nodes > 1:
                # error feedback between nodes where the node itself is not compressed
                res = None if residual is None or self.compressed(s) else residual
                if self.group.peers is not None:
                    part = None if res is None else res[lo:hi]
                    op = MpiSum(self.group.peers, acc, self.comp, part, self.group.gather)
                    yield from self.turns.run(b.index, op, (PEERS, b, []))
                else:
                    yield from self._between_nodes(b, call, acc, lo, hi, res)
                    acc = self.grads(0, s)[lo:hi].copy()
            if inv != 1.0 and not self.compressed(s):  # 16-bit sums are scaled when decoded
                acc *= acc.dtype.type(inv)
            if not is_finite_sum(acc):
                self._set(b, NONFINITE, call)
            self._deliver(b, acc, lo, hi)
        self._set(b, REDUCED, call)
        yield from self.wait_flags(b, REDUCED, call)
        if self.compressed(s):
            self._decode_result(b, inv)
            self._set(b, FINAL, call)

    def _between_nodes(self, b: Bucket, call: int, acc, lo: int, hi: int, residual=None):
        """Stage the node sums in local rank 0's region; the leader sums them over nodes."""
        self.grads(0, b.slab)[lo:hi] = acc
        self._set(b, STAGED, call)
        if self.me == 0:
            yield from self.wait_flags(b, STAGED, call)
            buf = self.grads(0, b.slab)[b.start : b.stop]
            res = None if residual is None else residual[b.start : b.stop]
            op = MpiSum(self.group.leaders, buf, self.comp, res, self.group.gather)
            yield from self.turns.run(b.index, op, (LEADER, b, []))  # same order on every leader
            self._set(b, LEADER, call, col=0)
        yield from self.wait_flags(b, LEADER, call, cols=[0])

    def contribute(self, b: Bucket, residual=None, scale=None) -> None:
        """Put this rank's bucket on the wire area (16-bit), with error feedback."""
        g = self.grads(self.me, b.slab)[b.start : b.stop]
        if residual is not None:
            g += residual[b.start : b.stop]
        scale = self.comp.scale_for(g) if scale is None else scale
        wire = self.wire(self.me, b.slab)[b.start : b.stop]
        self.comp.encode_into(g, wire, scale)
        if residual is not None:
            with np.errstate(invalid="ignore"):  # inf - inf: reported after the sum
                residual[b.start : b.stop] = g - self.comp.decode(wire, g.dtype, scale)
        self.scales[b.index, 0, self.me] = scale

    def _sum_in_place(self, s: int, lo: int, hi: int, inv: float) -> bool:
        """Sum slice [lo, hi) over the regions and write it back to all; False on NaN/inf."""
        dtype = self.layout.slabs[s].dtype
        acc = np.empty(min(CHUNK, hi - lo), dtype=dtype)
        regions = [self.grads(r, s) for r in range(self.n)]
        finite = True
        for c in range(lo, hi, CHUNK):
            parts = [g[c : min(c + CHUNK, hi)] for g in regions]
            out = _sum_into(acc[: len(parts[0])], parts)
            if inv != 1.0:
                out *= dtype.type(inv)
            finite = finite and is_finite_sum(out)
            for p in parts:
                p[...] = out
        return finite

    def _sum_slice(self, b: Bucket, lo: int, hi: int) -> np.ndarray:
        s = b.slab
        dtype = self.layout.slabs[s].dtype
        acc = np.empty(hi - lo, dtype=dtype)
        if self.compressed(s):
            for r in range(self.n):
                part = self.wire(r, s)[lo:hi]
                scale = self.scales[b.index, 0, r]
                self.comp.decode_into(part, acc, scale, add=r > 0)
            return acc
        for c in range(0, hi - lo, CHUNK):
            parts = [self.grads(r, s)[lo + c : min(lo + c + CHUNK, hi)] for r in range(self.n)]
            _sum_into(acc[c : c + len(parts[0])], parts)
        return acc

    def _deliver(self, b: Bucket, acc: np.ndarray, lo: int, hi: int) -> None:
        """Slice j of the result to every rank: float32 into the regions, or 16-bit into wire 0."""
        s = b.slab
        if self.compressed(s):
            scale = self.comp.scale_for(acc)
            self.comp.encode_into(acc, self.wire(0, s)[lo:hi], scale)
            self.scales[b.index, 1, self.me] = scale
            return
        for r in range(self.n):
            self.grads(r, s)[lo:hi] = acc

    def _decode_result(self, b: Bucket, inv: float) -> None:
        """This rank's copy of the result: every slice's 16-bit sum, decoded, times `inv`."""
        s = b.slab
        g = self.grads(self.me, s)
        for j in range(self.n):
            lo, hi = self.my_slice(b, j)
            factor, wire = inv / self.scales[b.index, 1, j], self.wire(0, s)[lo:hi]
            if not casts.decode(wire, g[lo:hi], factor):  # the C loop, else numpy's cast
                np.multiply(wire, g.dtype.type(factor), out=g[lo:hi], dtype=g.dtype)

    def nonfinite(self, b: Bucket, call: int) -> bool:
        return bool((self.flags[b.index, NONFINITE] == call).any())

    def free(self) -> None:
        self.shared.free()
