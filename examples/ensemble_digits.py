"""Vote with the best trials of a search, both ways, on the validation digits (one process).

    python examples/ensemble_digits.py runs/example-search

(`mpirun -n 3 python -m hpcdist.ensemble --search-dir D` does the same with one member per rank.)
"""

import json
import sys
from pathlib import Path

import numpy as np

from hpcdist import ensemble, inference

run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/example-search")
top = json.loads((run_dir / "top.json").read_text())
models = [inference.load_model(run_dir / entry["checkpoint"]) for entry in top]
x, y = inference.split_arrays(models[0].data_directory(), "val")
probas = np.stack([inference.probabilities(m.net, x) for m in models])
for entry, p in zip(top, probas, strict=True):
    print(f"member {entry['trial']}: {np.mean(p.argmax(1) == y):.4f}")
soft = ensemble.soft_vote(probas)
hard = ensemble.hard_vote(probas.argmax(axis=2), probas.shape[2])
print(f"soft vote: {np.mean(soft == y):.4f}")
print(f"hard vote: {np.mean(hard == y):.4f}")
