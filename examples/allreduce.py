"""Synchronous data parallelism: average gradients over ranks, optionally 16-bit on the wire.

mpirun -n 3 python examples/allreduce.py
"""

import numpy as np

import hpcdist

info = hpcdist.init()
rng = np.random.default_rng(info.rank)
grads = [rng.standard_normal(shape).astype(np.float32) for shape in [(256, 128), (128,), (10,)]]
# The reference: every rank's gradients, generated serially in float64.
every = [np.random.default_rng(r) for r in range(info.size)]
ref = [
    np.mean([g.standard_normal(s) for g in every], axis=0) for s in [(256, 128), (128,), (10,)]
]  # same draw order as above: one array at a time per rank
for name in ("none", "bf16", "fp16"):
    out = hpcdist.grouped_allreduce(
        grads, op="average", compression=getattr(hpcdist.Compression, name)
    )
    err = max(np.linalg.norm(o - r) / np.linalg.norm(r) for o, r in zip(out, ref, strict=True))
    if info.is_root:
        print(f"compression {name:>4}: relative error vs float64 reference {err:.2e}")
