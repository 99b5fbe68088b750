"""The seed's vertical split: every layer's units divided over the ranks, towers that meet
where the split requires it (one allreduce each way per pair of layers).

mpirun -n 3 python examples/tensor_parallel.py

First the equivalence harness shows, in float64, that the split model (100
hidden units over 3 ranks: 34, 33, 33) computes the unsplit model's output,
loss and every gradient; then the trainer trains the split model on the digits.
"""

import tempfile

import numpy as np

import hpcdist
from hpcdist import nn, parallel
from hpcdist.guard import Guard

hpcdist.init()
guard = Guard(name="example")

full = nn.mlp([64, 100, 50, 10], seed=1, dtype=np.float64)  # the same on every rank
part = parallel.tensor_split(full, guard)  # column, row, column (gathered) parallel
shapes = [tuple(p.data.shape) for p in part.parameters()]
print(f"rank {guard.rank} holds {shapes}", flush=True)
rng = np.random.default_rng(0)
x, y = rng.standard_normal((32, 64)), rng.integers(0, 10, 32)
report = parallel.compare(full, part, x, y, guard)
report.raise_if_failed(rtol=1e-12, atol=1e-14)
worst = max(d.max_abs for d in report.grads.values())
if guard.rank == 0:
    print(f"split == unsplit: output {report.output.max_abs:.1e}, loss {report.loss.max_abs:.1e},")
    print(f"  largest gradient difference {worst:.1e} (float64)")

with tempfile.TemporaryDirectory() as tmp:
    run_dir = guard.bcast(tmp, what="the run directory")
    cfg = hpcdist.TrainConfig(
        model_parallel="tensor",
        mp_size=guard.size,
        hidden=[100, 50],
        epochs=8,
        progress=False,
        run_dir=run_dir,
        checkpoint_every=0,
    )
    with hpcdist.Trainer(cfg) as trainer:
        summary = trainer.fit()
    guard.barrier(what="every rank done with the run directory")
accuracy = summary["final"]["val_accuracy"]
if guard.rank == 0:
    print(f"tensor parallel over {guard.size} ranks: val accuracy {accuracy:.4f}")
guard.free()
