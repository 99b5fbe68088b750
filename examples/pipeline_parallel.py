"""Layers on consecutive ranks: a pipeline of stages fed micro-batches by a schedule table.

mpirun -n 3 python examples/pipeline_parallel.py

Shows the 1F1B table this rank runs (checked for deadlocks before it runs),
the bubble both schedules leave beside (K-1)/(M+K-1), the equivalence harness
against the unsplit model in float64, and a short training run.
"""

import tempfile

import numpy as np

import hpcdist
from hpcdist import nn, parallel
from hpcdist.guard import Guard

hpcdist.init()
guard = Guard(name="example")
k, m = guard.size, 4

table = parallel.build_schedule("1f1b", k, m)  # data: one list of actions per stage
print(f"stage {guard.rank}: " + ", ".join(map(str, table[guard.rank])), flush=True)
guard.barrier(what="the tables printed")
if guard.rank == 0:
    for name in ("gpipe", "1f1b"):
        t = parallel.build_schedule(name, k, m)
        print(
            f"{name}: bubble {parallel.bubble(t):.3f} (formula {(k - 1) / (m + k - 1):.3f}), "
            f"activations held per stage {parallel.peak_activations(t)}"
        )

full = nn.mlp([64, 64, 48, 32, 10], seed=1, dtype=np.float64)
part = parallel.PipelineModel(full, guard, micro_batches=m, schedule="1f1b")
rng = np.random.default_rng(0)
x, y = rng.standard_normal((30, 64)), rng.integers(0, 10, 30)
parallel.compare(full, part, x, y, guard).raise_if_failed(rtol=1e-12, atol=1e-14)
if guard.rank == 0:
    print("pipeline == unsplit model: output, loss and every gradient (float64)")

with tempfile.TemporaryDirectory() as tmp:
    run_dir = guard.bcast(tmp, what="the run directory")
    cfg = hpcdist.TrainConfig(
        model_parallel="pipeline",
        mp_size=k,
        micro_batches=m,
        hidden=[64, 48, 32],
        epochs=8,
        progress=False,
        run_dir=run_dir,
        checkpoint_every=0,
    )
    with hpcdist.Trainer(cfg) as trainer:
        summary = trainer.fit()
    guard.barrier(what="every rank done with the run directory")
if guard.rank == 0:
    print(f"pipeline of {k} stages: val accuracy {summary['final']['val_accuracy']:.4f}")
guard.free()
