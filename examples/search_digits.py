"""A random search with median pruning, built in Python and run on every rank of the job.

    mpirun -n 4 python examples/search_digits.py runs/example-search

Each rank trains one trial at a time (--ranks-per-trial 1); kill it and run it again
and it continues where it stopped (the journal in the run directory).
"""

import sys
from pathlib import Path

from hpcdist import search

run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/example-search")
space = search.parse(
    {
        "search": {"strategy": "random", "samples": 8, "startup_trials": 3},
        "space": {
            "lr": {"low": 0.01, "high": 0.3, "log": True},
            "hidden": ["32", "64", "128,64"],
        },
        "fixed": {"epochs": 4, "warmup_epochs": 1.0},
    },
    "examples/search_digits.py",
)
job = search.Search(space, run_dir, space.trials(seed=1), prune="median", top_k=3, seed=1)
top = search.run(job)
if top is not None:  # rank 0
    best = top[0]
    print(
        f"best trial {best['trial']}: val accuracy {best['val_accuracy']:.4f}, lr {best['lr']:.4g}"
    )
