"""Bytes a split model's part puts on the wire while it trains (activations and their gradients).

A tensor-parallel layer counts the allreduces of its activations, a pipeline
stage its sends; evaluation is not counted. ModelParallelExchange.stats adds
the total to the replicas' gradient bytes, so summary.json's bytes_on_wire of
a split run holds both, counted as the allreduce exchange counts its own.
"""

from __future__ import annotations


def ring_bytes(nbytes: int, size: int) -> int:
    """Bytes one rank sends in a ring allreduce of `nbytes` over `size` ranks (exchange/mpi.py)."""
    return 2 * (size - 1) * nbytes // max(size, 1)


class Traffic:
    """A running count of the bytes one module sent."""

    def __init__(self):
        self.bytes = 0

    def add_allreduce(self, array, size: int) -> None:
        self.bytes += ring_bytes(array.nbytes, size)

    def add_send(self, array) -> None:
        self.bytes += array.nbytes


def total(model) -> int:
    """The bytes every module of `model` counted."""
    return sum(
        m.traffic.bytes for m in model.modules() if isinstance(getattr(m, "traffic", None), Traffic)
    )
