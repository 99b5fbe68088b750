"""The seed's parameter servers: ps tasks hold the sharded variables and apply the updates.

mpirun -n 4 python examples/parameter_server.py [sync|backup|async]

Rank 0 becomes /job:ps/task:0 and serves; the other ranks are workers that push
gradients and pull fresh parameters. "sync" aggregates every worker's gradient
each step (SyncReplicasOptimizer with all replicas: the same run as allreduce),
"backup" aggregates all but one (the slowest worker's gradient is dropped, and
counted), "async" applies each gradient as it comes with no worker more than 2
steps ahead of the slowest.
"""

import sys

import hpcdist

MODES = {
    "sync": {"exchange": "ps-sync"},
    "backup": {"exchange": "ps-sync", "replicas_to_aggregate": -1},  # workers - 1, below
    "async": {"exchange": "ps-async", "staleness": 2},
}

mode = sys.argv[1] if len(sys.argv) > 1 else "sync"
settings = dict(MODES[mode])
workers = hpcdist.init().size - 1
if settings.get("replicas_to_aggregate") == -1:
    settings["replicas_to_aggregate"] = max(1, workers - 1)
cfg = hpcdist.TrainConfig(ps=1, epochs=3, progress=False, **settings)  # run dir: runs/<time>
with hpcdist.Trainer(cfg) as trainer:
    summary = trainer.fit()
if "final" in summary:  # a worker; the ps task's summary says what it served
    ps = summary["parameter_server"]
    if trainer.is_root:
        print(
            f"{mode}: {workers} workers, val accuracy {summary['final']['val_accuracy']:.4f}, "
            f"{ps['updates_applied']} updates applied, {ps['gradients_dropped']} gradients dropped",
            flush=True,
        )
