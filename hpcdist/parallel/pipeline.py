"""Pipeline parallelism: consecutive layers on consecutive ranks, micro-batches, a schedule table.

    net = nn.mlp([64, 128, 64, 10], seed=1)                 # the unsplit model, every rank
    model = PipelineModel(net, Guard(mp_comm), micro_batches=4, schedule="1f1b")
    loss = model.train_batch(x, y)      # every stage: the batch's mean loss; this stage's
                                        # gradients (of that mean) in its parameters' .grad
    logits = model.forward(x)           # evaluation: the whole logits on every stage

Stage s holds a contiguous run of the model's Dense layers (each with the
activation and dropout after it), chosen to balance parameter counts. Every
stage is given the batch (stage 0 reads x, the last stage y); the batch is cut
into micro-batches (sizes differ by at most one), and the stage runs its row
of the schedule table (hpcdist.parallel.schedules, checked for deadlocks when
it is built). A transfer waits under the common deadline and a timeout names
this stage, its rank and what it waited for. Each micro-batch runs on shallow
copies of the stage's layers, so every micro-batch in flight keeps its own
forward cache while the parameters are shared; gradients are summed over the
micro-batches, each scaled by its share of the batch, so they are the
whole-batch gradients.
"""

from __future__ import annotations

import copy
import itertools
import time

import numpy as np
from mpi4py import MPI

from ..backend import get_array_module, to_numpy
from ..deadline import Deadline, default_timeout, wait_requests
from ..nn import Dense, Module, Parameter, Sequential, softmax_cross_entropy
from . import schedules
from .chain import Chain, Piece
from .tensor import split_sizes
from .traffic import Traffic

_EVAL_TAG = 1 << 14


def stage_bounds(net: Sequential, stages: int) -> list[tuple[int, int]]:
    """[start, end) layer ranges, each starting at a Dense, balancing parameter counts."""
    starts = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]
    if not starts or starts[0] != 0:
        raise ValueError("a pipeline splits models whose first layer is a Dense")
    if stages > len(starts):
        raise ValueError(
            f"cannot split a model of {len(starts)} Dense layers into {stages} pipeline stages "
            f"(--mp-size {stages}): use at most {len(starts)} stages or more --hidden layers"
        )
    ends = starts[1:] + [len(net.layers)]
    weight = [sum(p.data.size for p in net.layers[s].parameters()) for s in starts]
    best = None
    for cut in itertools.combinations(range(1, len(starts)), stages - 1):
        edges = (0, *cut, len(starts))
        cost = max(sum(weight[a:b]) for a, b in itertools.pairwise(edges))
        if best is None or cost < best[0]:
            best = (cost, edges)
    edges = best[1]
    return [(starts[a], ends[b - 1]) for a, b in itertools.pairwise(edges)]


def _stage_chain(net: Sequential, lo: int, hi: int) -> Chain:
    before = sum(len(layer.parameters()) for layer in net.layers[:lo])
    layers = [copy.deepcopy(layer) for layer in net.layers[lo:hi]]
    params = [p for layer in layers for p in layer.parameters()]
    return Chain(layers, [Piece.whole(p, before + i) for i, p in enumerate(params)])


def _world_ranks(comm) -> list[int]:
    world = MPI.COMM_WORLD.Get_group()
    return list(MPI.Group.Translate_ranks(comm.Get_group(), list(range(comm.size)), world))


class PipelineModel(Module):
    """This rank's stage of `net` in the pipeline over guard's ranks (stage = rank)."""

    def __init__(
        self,
        net: Sequential,
        guard,
        *,
        micro_batches: int,
        schedule: str = "1f1b",
        timeout: float | None = None,
    ):
        self.guard, self.stage, self.stages = guard, guard.rank, guard.size
        lo, hi = stage_bounds(net, self.stages)[self.stage]
        self.part = _stage_chain(net, lo, hi)
        dense = [layer for layer in self.part.layers if isinstance(layer, Dense)]
        self.in_width, self.out_width = (
            dense[0].weight.data.shape[0],
            dense[-1].weight.data.shape[1],
        )
        self.classes = net.parameters()[-1].data.shape[-1]
        self.micro_batches, self.schedule = int(micro_batches), schedule
        self.table = schedules.build(schedule, self.stages, self.micro_batches)[self.stage]
        self.timeout = default_timeout() if timeout is None else timeout
        self.comm = guard.comm  # MPI keeps point-to-point apart from the guard's collectives
        self.world_ranks = _world_ranks(self.comm)
        self.last = self.stage == self.stages - 1
        self.traffic = Traffic()  # bytes sent in training (activations, their gradients)
        self.busy_s = 0.0  # seconds spent in forward and backward actions (the bubble's other side)

    def parameters(self) -> list[Parameter]:
        return self.part.parameters()

    def modules(self) -> list[Module]:
        return [self] + self.part.modules()

    def pieces(self) -> list[Piece]:
        return self.part.pieces()

    def backward(self, dout, input_grad: bool = True):
        raise TypeError("a PipelineModel runs forward and backward together: use train_batch")

    # --- training -------------------------------------------------------------
    def train_batch(self, x, y) -> float:
        """Run this stage's row of the schedule on (x, y); the batch's mean loss on every stage."""
        n = len(y)
        if n < self.micro_batches:
            raise ValueError(
                f"a batch of {n} cannot be cut into {self.micro_batches} micro-batches: "
                f"use --micro-batches <= --batch-size"
            )
        sizes = split_sizes(n, self.micro_batches)
        run = _Run(self, x, y, sizes)
        for action in self.table:
            run.do(action)
        for p, total in zip(self.parameters(), run.acc, strict=True):
            p.grad[...] = total
        loss = np.array([run.loss if self.last else 0.0])
        self.traffic.add_allreduce(loss, self.stages)
        return float(self.guard.allreduce(loss, what="the pipeline's batch loss")[0])

    def exchange(self, ops, send: dict, recv: dict, shapes: dict, xp) -> None:
        """Post one group of transfers and wait for all of them under the deadline."""
        reqs = []
        for op in ops:
            tag = 2 * op.micro + (op.what == "grad")
            if op.kind == "send":
                out = to_numpy(send.pop((op.what, op.micro)))
                self.traffic.add_send(out)
                reqs.append(self.comm.Isend(out, op.peer, tag))
            else:
                buf = np.empty(shapes[op.what, op.micro], dtype=self.dtype)
                recv[op.what, op.micro] = buf
                reqs.append(self.comm.Irecv(buf, op.peer, tag))
        wait_requests(reqs, Deadline(self.timeout), self._waiting_for(ops))
        for op in ops:
            if op.kind == "recv":
                recv[op.what, op.micro] = xp.asarray(recv[op.what, op.micro])

    def _waiting_for(self, ops) -> str:
        peers = ", ".join(f"{op} (rank {self.world_ranks[op.peer]})" for op in ops)
        me = self.world_ranks[self.stage]
        return f"pipeline stage {self.stage} (rank {me}) waiting to {peers}"

    @property
    def dtype(self):
        return to_numpy(self.parameters()[0].data[:0]).dtype

    # --- evaluation -----------------------------------------------------------
    def forward(self, x):
        """The whole batch through every stage in turn; the logits on every stage."""
        xp = get_array_module(x)
        n = x.shape[0]
        inp = x
        if self.stage > 0:
            inp = np.empty((n, self.in_width), dtype=self.dtype)
            self._wait([self.comm.Irecv(inp, self.stage - 1, _EVAL_TAG)], "activations")
            inp = xp.asarray(inp)
        out = self.part.forward(inp)
        if not self.last:
            self._wait([self.comm.Isend(to_numpy(out), self.stage + 1, _EVAL_TAG)], "a send")
            out = xp.zeros((n, self.classes), dtype=out.dtype)
        logits = self.guard.allreduce(to_numpy(out), what="the pipeline's logits")
        return xp.asarray(logits)

    def _wait(self, reqs, what: str) -> None:
        me = self.world_ranks[self.stage]
        wait_requests(
            reqs,
            Deadline(self.timeout),
            f"pipeline stage {self.stage} (rank {me}) in evaluation waiting for {what}",
        )


class _Run:
    """One batch through one stage: the micro-batches' inputs, outputs and gradients in flight."""

    def __init__(self, model: PipelineModel, x, y, sizes: list[int]):
        self.m, self.x, self.y, self.n = model, x, y, sum(sizes)
        self.xp = get_array_module(model.parameters()[0].data)
        self.rows = [(sum(sizes[:i]), sum(sizes[: i + 1])) for i in range(len(sizes))]
        self.shapes = {}
        for i, b in enumerate(sizes):
            self.shapes["act", i] = (b, model.in_width)
            self.shapes["grad", i] = (b, model.out_width)
        self.inbox: dict = {}  # ("act"|"grad", m) -> received array
        self.outbox: dict = {}  # ("act"|"grad", m) -> array to send
        self.copies: dict = {}  # m -> the stage's layers as micro-batch m's forward left them
        self.acc = [self.xp.zeros_like(p.grad) for p in model.parameters()]
        self.loss = 0.0

    def do(self, action) -> None:
        if action.kind == "comm":
            self.m.exchange(action.ops, self.outbox, self.inbox, self.shapes, self.xp)
            return
        start = time.perf_counter()
        if action.kind == "forward":
            self.forward(action.micro)
        else:
            self.backward(action.micro)
        self.m.busy_s += time.perf_counter() - start

    def forward(self, i: int) -> None:
        lo, hi = self.rows[i]
        inp = self.x[lo:hi] if self.m.stage == 0 else self.inbox.pop(("act", i))
        chain = copy.copy(self.m.part)
        chain.layers = [copy.copy(layer) for layer in chain.layers]
        self.copies[i] = chain
        out = chain.forward(inp)
        if not self.m.last:
            self.outbox["act", i] = out
            return
        loss, dlogits = softmax_cross_entropy(out, self.y[lo:hi])
        share = (hi - lo) / self.n
        dlogits *= dlogits.dtype.type(share)
        self.loss += float(loss) * share
        self.inbox["grad", i] = dlogits

    def backward(self, i: int) -> None:
        chain = self.copies.pop(i)
        din = chain.backward(self.inbox.pop(("grad", i)), input_grad=self.m.stage > 0)
        for total, p in zip(self.acc, self.m.parameters(), strict=True):
            total += p.grad
        if self.m.stage > 0:
            self.outbox["grad", i] = din
