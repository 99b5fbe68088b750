"""Launcher-test job: a train-like loop over shards where one is corrupt."""

import sys

import numpy as np

import hpcdist
from hpcdist.data import HDF5Source, InputPipeline

hpcdist.init()
comm = hpcdist.runtime.world_comm()
pipe = InputPipeline(
    HDF5Source(sys.argv[1]), 10, seed=0, comm=comm, shuffle_buffer=20, block_size=50
)
total = np.zeros(1)
for epoch in range(2):
    for x, _ in pipe.epoch(epoch):
        comm.Allreduce(np.array([x.sum()], dtype=np.float64), total)
print("finished without noticing the corrupt shard")
