"""Seed notes In [4]: a on the ps task, b = a + 2 on a worker, c = a + b on worker 1.

mpiexec -n 3 python examples/seed/cluster_tasks.py

Differs from the notes on purpose: no "This code runs only once" line, since an
MPI job can be started again at will (the TF servers could not be made twice in
one kernel). The ps task holds a and sends it to the workers; worker 1 prints c.
"""

import numpy as np

import hpcdist
from hpcdist.guard import Guard

hpcdist.init()
roles = hpcdist.Cluster(hpcdist.ClusterSpec({"ps": 1, "worker": 2}))
guard = Guard(name="seed example")
ps_rank = roles.ranks("ps")[0]
a = np.float32(1.0) if roles.task.job == "ps" else None  # "variable a" lives on /job:ps
a = guard.bcast(a, root=ps_rank, what="a from /job:ps/task:0")
if roles.task.job == "worker":
    b = a + np.float32(2.0)  # /job:worker
    if roles.task.index == 1:
        c = a + b  # /job:worker/task:1
        print(c)
guard.free()
