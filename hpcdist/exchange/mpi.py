"""Sum of one contiguous buffer over a communicator with non-blocking MPI (optionally 16-bit)."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..backend import get_array_module, is_cupy
from ..compression import Compressor


def _u16(x):
    """A 16-bit wire array as uint16 (MPI has no bfloat16 or half type)."""
    return x.view(get_array_module(x).uint16)


def _sync_stream(x) -> None:
    if is_cupy(x):  # MPI reads device memory directly: the kernels must be done
        get_array_module(x).cuda.get_current_stream().synchronize()


#: The tag of the two-rank 16-bit swap (point to point beside the collectives).
PAIR_TAG = 29


class Polling(tuple):
    """A wait on a posted MPI operation: it moves only while this rank calls into MPI (MPICH's
    non-blocking Alltoallv/Allgatherv of large buffers advance a little per Test), so the
    driver polls it between yields instead of sleeping (docs/exchange.md)."""


class Turns:
    """Collectives on one communicator must be posted in the same order on every rank.

    Buckets finish their stages in different orders on different ranks, so an
    op waits for its turn. One that posts two rounds (the 16-bit path) posts its
    second on its own `gather_comm`, in the order of a second set of turns, so
    the next bucket's first round need not wait for it (a pipeline); without a
    gather_comm it keeps the turn until it is done.
    """

    def __init__(self):
        self.order: list = []
        self.turn = 0
        self.gather: Turns | None = None  # the second rounds' turns, made when first needed

    def reset(self, order: list) -> None:
        self.order, self.turn = list(order), 0
        if self.gather is not None:
            self.gather.reset(order)

    def mine(self, key) -> bool:
        return self.turn < len(self.order) and self.order[self.turn] == key

    def advance(self) -> None:
        self.turn += 1

    def run(self, key, op: MpiSum, waiting):
        """Generator: wait for the turn of `key`, start `op`, and drive it to the end."""
        while not self.mine(key):
            yield waiting
        pipelined = op.gather_comm is not None and not op.single_round
        if pipelined:
            if self.gather is None:
                self.gather = Turns()
                self.gather.reset(self.order)
            gather = self.gather
            op.gate, op.passed = (lambda: gather.mine(key)), gather.advance
        op.start()
        if op.single_round or pipelined:
            self.turn += 1
        polling = Polling(waiting)
        while not op.progress():
            yield polling
        if not (op.single_round or pipelined):
            self.turn += 1


class MpiSum:
    """Sum `buf` (1-d, contiguous) in place over `comm`, driven by progress().

    Without compression one Iallreduce. With a 16-bit compressor: every rank
    sends chunk k of its 16-bit contribution to rank k (Ialltoallv), rank k
    sums the chunks in the buffer's precision (float32 or wider), and the
    16-bit sums are gathered back (Iallgatherv): the error does not grow with
    the number of ranks, and the wire carries 2 bytes an element both ways.
    The gather goes on `gather_comm` when given (Turns pipelines the rounds);
    `gate()` says when it may be posted and `passed()` is called once it is.
    """

    def __init__(
        self, comm: MPI.Comm, buf, compressor: Compressor, residual=None, gather_comm=None
    ):
        self.comm, self.buf, self.comp, self.residual = comm, buf, compressor, residual
        self.gather_comm = gather_comm
        self.gate = self.passed = None
        self.compressed = compressor.wire_itemsize is not None and np.dtype(buf.dtype).kind == "f"
        self.stage = 0
        self.reqs: list = []
        itemsize = compressor.wire_itemsize if self.compressed else buf.dtype.itemsize
        p = comm.size
        self.wire_bytes = 2 * (p - 1) * buf.size * itemsize // max(p, 1)
        # two ranks: each sends its whole 16-bit contribution and sums both itself, in rank
        # order (the same bytes as a reduce-scatter + allgather, in one round, rounded once)
        self.pairwise = self.compressed and p == 2
        self.single_round = not self.compressed or p == 1 or self.pairwise

    def start(self) -> MpiSum:
        _sync_stream(self.buf)
        if self.comm.size == 1:
            self.stage = 3
        elif not self.compressed:
            self.reqs = [self.comm.Iallreduce(MPI.IN_PLACE, self.buf, MPI.SUM)]
            self.stage = 2
        elif self.pairwise:
            self._swap()
        else:
            self._scatter()
        return self

    def progress(self) -> bool:
        """Advance without blocking; True once buf holds the sum on this rank."""
        if self.stage >= 3:
            return True
        if not MPI.Request.Testall(self.reqs):
            return False
        if self.stage == 1:
            if self.gate is not None and not self.gate():
                return False  # the gathers go out in bucket order
            self._reduce_and_gather()
            if self.passed is not None:
                self.passed()
            return False
        if self.pairwise:
            self._sum_pair()
        elif self.compressed:
            self._unpack()
        self.stage = 3
        return True

    def _encode_own(self):
        """This rank's contribution (plus last step's rounding) in 16 bits, and its scale."""
        if self.residual is not None:  # error feedback: last step's rounding goes in now
            self.buf += self.residual
        scale = self.comp.scale_for(self.buf)
        wire = self.comp.encode(self.buf, scale)
        if self.residual is not None:
            with np.errstate(invalid="ignore"):  # inf - inf: reported after the sum
                self.residual[...] = self.buf - self.comp.decode(wire, self.buf.dtype, scale)
        return wire, scale

    def _swap(self) -> None:
        """Two ranks: send the whole 16-bit contribution (and its scale) to the other."""
        xp = get_array_module(self.buf)
        wire, scale = self._encode_own()
        self.wire_out = wire
        self.recv = xp.empty(wire.shape, dtype=wire.dtype)
        self.scales = np.empty(2, dtype=np.float64)
        _sync_stream(wire)
        self.send_scale = np.array([scale])
        other = 1 - self.comm.rank
        self.reqs = [
            self.comm.Iallgather(self.send_scale, [self.scales, MPI.DOUBLE]),
            self.comm.Irecv([_u16(self.recv), MPI.UINT16_T], other, PAIR_TAG),
            self.comm.Isend([_u16(wire), MPI.UINT16_T], other, PAIR_TAG),
        ]
        self.stage = 2

    def _sum_pair(self) -> None:
        """buf = rank 0's decoded contribution + rank 1's, the same bits on both ranks."""
        parts = [self.wire_out, self.recv] if self.comm.rank == 0 else [self.recv, self.wire_out]
        for r, part in enumerate(parts):
            self.comp.decode_into(part, self.buf, self.scales[r], add=r > 0)

    def _split(self):
        p, n = self.comm.size, self.buf.size
        counts = np.array([n // p + (1 if k < n % p else 0) for k in range(p)], dtype=np.int64)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        return counts, displs

    def _scatter(self) -> None:
        xp = get_array_module(self.buf)
        p, me = self.comm.size, self.comm.rank
        self.counts, self.displs = self._split()
        wire, scale = self._encode_own()
        self.wire_out = wire
        mine = int(self.counts[me])
        self.recv = xp.empty(p * mine, dtype=wire.dtype)
        self.scales = np.empty(p, dtype=np.float64)
        _sync_stream(wire)
        rc = [mine] * p
        rd = [k * mine for k in range(p)]
        self.send_scale = np.array([scale])  # must outlive the non-blocking call
        self.reqs = [
            self.comm.Iallgather(self.send_scale, [self.scales, MPI.DOUBLE]),
            self.comm.Ialltoallv(
                [_u16(wire), (self.counts, self.displs), MPI.UINT16_T],
                [_u16(self.recv), (rc, rd), MPI.UINT16_T],
            ),
        ]
        self.stage = 1

    def _reduce_and_gather(self) -> None:
        xp = get_array_module(self.buf)
        p, me = self.comm.size, self.comm.rank
        mine = int(self.counts[me])
        dtype = self.buf.dtype
        acc = xp.empty(mine, dtype=dtype)
        for r in range(p):  # in rank order, in the buffer's precision
            part = self.recv[r * mine : (r + 1) * mine]
            self.comp.decode_into(part, acc, self.scales[r], add=r > 0)
        scale = self.comp.scale_for(acc)
        wire = self.comp.encode(acc, scale)
        self.wire_out = wire
        self.gathered = xp.empty(self.buf.size, dtype=wire.dtype)
        self.result_scales = np.empty(p, dtype=np.float64)
        _sync_stream(wire)
        self.send_scale = np.array([scale])
        comm = self.gather_comm or self.comm
        self.reqs = [
            comm.Iallgather(self.send_scale, [self.result_scales, MPI.DOUBLE]),
            comm.Iallgatherv(
                [_u16(wire), MPI.UINT16_T],
                [_u16(self.gathered), (self.counts, self.displs), MPI.UINT16_T],
            ),
        ]
        self.stage = 2

    def _unpack(self) -> None:
        for k in range(self.comm.size):
            lo, hi = int(self.displs[k]), int(self.displs[k] + self.counts[k])
            self.comp.decode_into(self.gathered[lo:hi], self.buf[lo:hi], self.result_scales[k])
