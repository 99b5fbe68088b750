"""Roles and device placement (the seed's cluster spec, device pinning, dynamic placement).

mpirun -n 4 python examples/placement.py
"""

import hpcdist
from hpcdist.devices import log_device_placement

info = hpcdist.init()
roles = hpcdist.Cluster(hpcdist.ClusterSpec({"ps": 1, "worker": None}))


def place(rank_info, task):
    """A dynamic placement function: ps tasks on the CPU, workers on a GPU if there is one."""
    return "/cpu:0" if task.job == "ps" else "gpu"  # soft placement falls back to the CPU


placement = hpcdist.pin_device(place, task=roles.task)
log_device_placement(info, roles.task, placement)
# Each job has its own communicator: the workers can reduce among themselves.
total = roles.job_comm.allreduce(1)
if roles.task.index == 0:
    print(f"{roles.task.job} job has {total} task(s) on ranks {roles.ranks(roles.task.job)}")
