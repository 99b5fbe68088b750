"""Two trainers in one job: COMM_WORLD split into groups of 2, each trains with its own seed.

mpiexec -n 4 python two_groups.py RUN_BASE SEED0 SEED1 [EPOCHS]
"""

import sys
from pathlib import Path

from mpi4py import MPI

import hpcdist

base, seeds = Path(sys.argv[1]), [int(sys.argv[2]), int(sys.argv[3])]
epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 2
hpcdist.init()
world = MPI.COMM_WORLD
color = world.rank // 2
group = world.Split(color, world.rank)
cfg = hpcdist.TrainConfig(
    seed=seeds[color], epochs=epochs, run_dir=str(base / f"group{color}"), progress=False
)
with hpcdist.Trainer(cfg, comm=group) as trainer:
    summary = trainer.fit()
print(f"group {color} rank {group.rank}: {summary['status']} {summary['final']['val_accuracy']}")
