"""Tensor parallelism: Dense layers whose units are divided over the ranks of a group.

    net = nn.mlp([64, 100, 50, 10], seed=1)           # the unsplit model, same on every rank
    part = tensor.split(net, Guard(mp_comm))          # this rank's Chain of split layers

Megatron-LM's pair: a column-parallel Dense holds output units lo:hi
(weight[:, lo:hi], bias[lo:hi]); its forward needs no exchange, its backward
all-reduces the input gradient over the group. A row-parallel Dense holds
input rows lo:hi (weight[lo:hi, :]) and all-reduces its partial product in
forward before the bias (which every rank holds) is added; its backward needs
no exchange. `split` alternates them (column, row, column, ...), so a column
layer and the row layer after it exchange once each way, and activations and
dropout between them work on the local units. A last column layer gathers
its output (an allreduce of zero-padded slices, which is exact), so every
rank gets the whole logits. Units that do not divide evenly go to the first
ranks: 100 over 3 is 34, 33, 33.
"""

from __future__ import annotations

import copy

import numpy as np

from ..backend import get_array_module, to_numpy
from ..nn import Dense, Dropout, Module, Parameter, Sequential
from .chain import Chain, Piece
from .traffic import Traffic


def split_sizes(n: int, parts: int) -> list[int]:
    """n units over `parts` ranks, the first n % parts ranks one more (100, 3 -> 34, 33, 33)."""
    if parts < 1 or n < parts:
        raise ValueError(f"cannot split {n} unit(s) over {parts} rank(s): each needs at least one")
    return [n // parts + (1 if r < n % parts else 0) for r in range(parts)]


def split_range(n: int, parts: int, rank: int) -> tuple[int, int]:
    """[lo, hi) of rank's share of n units."""
    sizes = split_sizes(n, parts)
    lo = sum(sizes[:rank])
    return lo, lo + sizes[rank]


def _allreduce(guard, a, what: str):
    """Sum `a` over the guard's ranks (device arrays staged through the host)."""
    xp = get_array_module(a)
    return xp.asarray(guard.allreduce(to_numpy(a), what=what))


class ColumnParallelDense(Module):
    """Output units [lo, hi) of a Dense; backward all-reduces the input gradient."""

    def __init__(self, weight: Parameter, bias: Parameter, guard, *, lo: int, full: int, gather):
        self.weight, self.bias, self.guard = weight, bias, guard
        self.lo, self.hi, self.full, self.gather = lo, lo + weight.data.shape[1], full, gather
        self._x = None
        self.traffic = Traffic()

    def forward(self, x):
        xp = get_array_module(x)
        self._x = x
        y = xp.matmul(x, self.weight.data)
        y += self.bias.data
        if not self.gather:
            return y
        whole = xp.zeros((y.shape[0], self.full), dtype=y.dtype)
        whole[:, self.lo : self.hi] = y
        if self.training:
            self.traffic.add_allreduce(whole, self.guard.size)
        return _allreduce(self.guard, whole, f"the output units of {self.weight.name}")

    def backward(self, dout, input_grad: bool = True):
        xp = get_array_module(dout)
        x = self._need_cache(self._x)
        if self.gather:
            dout = xp.ascontiguousarray(dout[:, self.lo : self.hi])
        xp.matmul(x.T, dout, out=self.weight.grad)
        xp.sum(dout, axis=0, out=self.bias.grad)
        if not input_grad:
            return None
        part = xp.matmul(dout, self.weight.data.T)
        self.traffic.add_allreduce(part, self.guard.size)
        return _allreduce(self.guard, part, f"the input gradient of {self.weight.name}")

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]


class RowParallelDense(Dense):
    """Input rows [lo, hi) of a Dense; forward all-reduces the partial product, then adds bias.

    Backward is Dense's: the slice's weight gradient and the bias gradient (every rank
    holds the whole bias) need no exchange; the input gradient is this slice's rows.
    """

    def __init__(self, weight: Parameter, bias: Parameter, guard):  # not Dense's: no init draw
        self.weight, self.bias, self.guard = weight, bias, guard
        self._x = None
        self.traffic = Traffic()

    def forward(self, x):
        self._x = x
        part = get_array_module(x).matmul(x, self.weight.data)
        if self.training:
            self.traffic.add_allreduce(part, self.guard.size)
        y = _allreduce(self.guard, part, f"the partial products of {self.weight.name}")
        y += self.bias.data
        return y


class SlicedDropout(Dropout):
    """Dropout on units [lo, hi) of `full`: draws the whole mask and keeps its slice.

    Every rank of the group draws from the same stream, so the split model drops
    exactly the units the unsplit one would.
    """

    def __init__(self, base: Dropout, lo: int, hi: int, full: int):
        super().__init__(base.rate)
        self.name, self.rng = base.name, copy.deepcopy(base.rng)
        self.lo, self.hi, self.full = lo, hi, full

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            return super().forward(x)
        xp = get_array_module(x)
        drawn = self.rng.random((x.shape[0], self.full), dtype=np.float32)
        keep = drawn[:, self.lo : self.hi] >= np.float32(self.rate)
        self._mask = mask = xp.asarray(keep, dtype=x.dtype)
        mask *= x.dtype.type(1.0 / (1.0 - self.rate))
        return x * mask


def split(net: Sequential, guard) -> Chain:
    """This rank's part of `net` (unchanged): Dense layers alternately column and row parallel."""
    size, rank = guard.size, guard.rank
    positions = {id(p): i for i, p in enumerate(net.parameters())}
    dense_count = sum(isinstance(layer, Dense) for layer in net.layers)
    layers, pieces, split_units, j = [], [], None, 0
    for layer in net.layers:
        if isinstance(layer, Dense):
            made, made_pieces, split_units = _split_dense(
                layer, guard, j, last=j == dense_count - 1, positions=positions
            )
            layers.append(made)
            pieces += made_pieces
            j += 1
        elif layer.parameters():
            raise TypeError(f"tensor.split: cannot split a {type(layer).__name__} with parameters")
        elif split_units is not None and isinstance(layer, Dropout):
            layers.append(SlicedDropout(layer, *split_range(split_units, size, rank), split_units))
        else:
            layers.append(copy.deepcopy(layer))
    return Chain(layers, pieces)


def _split_dense(dense: Dense, guard, j: int, *, last: bool, positions: dict):
    """(layer, pieces, units left split after it or None) for the j-th Dense of the model."""
    w, b = to_numpy(dense.weight.data), to_numpy(dense.bias.data)
    xp = get_array_module(dense.weight.data)
    n_in, n_out = w.shape
    pos_w, pos_b = positions[id(dense.weight)], positions[id(dense.bias)]
    if j % 2 == 0:  # column parallel
        lo, hi = split_range(n_out, guard.size, guard.rank)
        weight = Parameter(dense.weight.name, xp.asarray(w[:, lo:hi].copy()))
        bias = Parameter(dense.bias.name, xp.asarray(b[lo:hi].copy()))
        layer = ColumnParallelDense(weight, bias, guard, lo=lo, full=n_out, gather=last)
        pieces = [
            Piece(weight, pos_w, w.shape, ((0, n_in), (lo, hi))),
            Piece(bias, pos_b, b.shape, ((lo, hi),)),
        ]
        return layer, pieces, None if last else n_out
    lo, hi = split_range(n_in, guard.size, guard.rank)
    weight = Parameter(dense.weight.name, xp.asarray(w[lo:hi].copy()))
    bias = Parameter(dense.bias.name, xp.asarray(b.copy()))
    pieces = [
        Piece(weight, pos_w, w.shape, ((lo, hi), (0, n_out))),
        Piece(bias, pos_b, b.shape, ((0, n_out),), primary=guard.rank == 0),
    ]
    return RowParallelDense(weight, bias, guard), pieces, None
