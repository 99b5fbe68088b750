"""A model of one's own (a CNN built with hpcdist.nn) trained by hpcdist.Trainer.

    mpiexec -n 4 python tests/scripts/custom_model.py RUN_DIR EPOCHS

Prints the final validation accuracy and whether every rank ends with the
same parameters, bit for bit.
"""

import sys

import numpy as np
from mpi4py import MPI

import hpcdist
from hpcdist import nn


def main() -> int:
    run_dir, epochs = sys.argv[1], int(sys.argv[2])
    cfg = hpcdist.TrainConfig(epochs=epochs, run_dir=run_dir, progress=False, seed=3)
    model = nn.cnn(nn.square_image(64), 10, channels=(16, 32), hidden=(64,), seed=3)
    with hpcdist.Trainer(cfg, model=model) as tr:
        summary = tr.fit()
        digest = b"".join(np.ascontiguousarray(p.data).tobytes() for p in tr.params)
    same = len(set(MPI.COMM_WORLD.allgather(digest))) == 1
    if MPI.COMM_WORLD.rank == 0:
        print(f"custom model: val_accuracy {summary['final']['val_accuracy']:.4f}")
        print(f"custom model: parameters equal on every rank: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
