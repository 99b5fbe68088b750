"""One object per communicator, hung off it as an MPI attribute."""

from __future__ import annotations

from collections.abc import Callable

from mpi4py import MPI


class PerComm:
    """`get(comm)` returns the object `factory(comm)` made for this communicator.

    The object is found by attribute, not by handle: a freed communicator
    whose handle MPI reuses gets a new one.
    """

    def __init__(self, factory: Callable[[MPI.Comm], object]):
        self.factory = factory
        self.keyval = MPI.Comm.Create_keyval()
        self.made: list = []

    def get(self, comm: MPI.Comm):
        obj = comm.Get_attr(self.keyval)
        if obj is None:
            obj = self.factory(comm)
            comm.Set_attr(self.keyval, obj)
            self.made.append(obj)
        return obj
