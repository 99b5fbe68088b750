"""One rank (argv[1]) never reaches a guarded barrier; the others must name it and abort."""

import sys
import time

from mpi4py import MPI

from hpcdist import init
from hpcdist.guard import Guard

init()
missing = int(sys.argv[1])
guard = Guard(MPI.COMM_WORLD, timeout=float(sys.argv[2]), name="test")
if MPI.COMM_WORLD.rank == missing:
    time.sleep(60)  # absent: the job must not wait for this
else:
    guard.barrier(what="the test's barrier")
print("unreachable: the barrier passed", flush=True)
