"""Quantize a trained model to int8 and compare its predictions with the float32 model's.

    python examples/predict_digits.py runs/example-search/trials/t000/checkpoints/ckpt-*.h5

(`mpirun -n 3 python -m hpcdist.predict --checkpoint Q.h5 --output OUT.h5` serves either file.)
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from hpcdist import inference, quantize

checkpoint = Path(sys.argv[1])
params, meta, _ = inference.read_weights(checkpoint)
ints, floats = quantize.quantize_params(params)
with tempfile.TemporaryDirectory() as tmp:
    q_path = quantize.write(Path(tmp) / "q.h5", ints, floats, meta, str(checkpoint))
    full, small = inference.load_model(checkpoint), inference.load_model(q_path)
    x, y = inference.split_arrays(full.data_directory(), "val")
    p32, p8 = inference.probabilities(full.net, x), inference.probabilities(small.net, x)
ratio = quantize.nbytes(ints, floats) / sum(a.size * 4 for a in params.values())
print(f"int8 model: {ratio:.3f}x the float32 bytes")
print(f"float32 accuracy {np.mean(p32.argmax(1) == y):.4f}, int8 {np.mean(p8.argmax(1) == y):.4f}")
print(f"same label on {np.mean(p32.argmax(1) == p8.argmax(1)):.1%} of the samples")
