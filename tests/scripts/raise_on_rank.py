"""Raise on one rank only (argv[1]); the others wait in a barrier forever."""

import sys
import time

from mpi4py import MPI

import hpcdist

hpcdist.init()
if hpcdist.rank() == int(sys.argv[1]):
    time.sleep(0.2)
    raise RuntimeError("boom from the test script")
MPI.COMM_WORLD.Barrier()  # would hang without the abort hook
print("unreachable: barrier passed", flush=True)
