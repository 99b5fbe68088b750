"""A job for the Ctrl-C tests: `python interrupt_job.py MODE DIR`.

MODE "loop": every rank runs guarded allreduces with no signal handling of its
own (a user's script: Ctrl-C becomes KeyboardInterrupt). MODE "readers": an
InputPipeline with reader processes (shared memory) runs epochs; each rank
writes the shared-memory segments it created to DIR/shm.RANK. Both write
DIR/ready.RANK once under way, then run until interrupted.
"""

import os
import sys
import time

import h5py
import numpy as np
from mpi4py import MPI

import hpcdist
from hpcdist.data import HDF5Source, InputPipeline, write_manifest
from hpcdist.guard import Guard

mode, d = sys.argv[1], sys.argv[2]
hpcdist.init()
comm = MPI.COMM_WORLD


def ready() -> None:
    with open(os.path.join(d, f"ready.{comm.rank}"), "w") as f:
        f.write(str(os.getpid()))


def my_segments() -> set:
    """Shared-memory segments this process has mapped (its reader processes' slots)."""
    with open("/proc/self/maps") as f:
        return {ln.split("/dev/shm/")[1].split()[0] for ln in f if "/dev/shm/psm_" in ln}


if mode == "loop":
    guard = Guard(comm, timeout=60)
    ready()
    while True:
        guard.allreduce(np.ones(1000), what="the test's allreduce")
        time.sleep(0.001)
elif mode == "readers":
    shard_dir = os.path.join(d, f"shards{comm.rank}")
    os.makedirs(shard_dir)
    with h5py.File(os.path.join(shard_dir, "s0.h5"), "w") as f:
        f["features"] = np.arange(4000, dtype="f4").reshape(1000, 4)
        f["labels"] = np.arange(1000)
    write_manifest(
        shard_dir,
        [{"path": "s0.h5", "records": 1000}],
        feature_shape=[4],
        feature_dtype="float32",
        label_dtype="int64",
    )
    pipe = InputPipeline(
        HDF5Source(shard_dir),
        10,
        comm=MPI.COMM_SELF,
        readers="processes",
        block_size=50,
        num_threads=2,
    )
    for epoch in range(10**6):
        for i, _ in enumerate(pipe.epoch(epoch)):
            if epoch == 0 and i == 0:
                with open(os.path.join(d, f"shm.{comm.rank}"), "w") as f:
                    f.write("\n".join(sorted(my_segments())))
                ready()
            time.sleep(0.001)
