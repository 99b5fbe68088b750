"""A float64 numpy forward pass of a checkpoint's MLP, written independently of hpcdist.nn."""

import numpy as np

from hpcdist.ckptfile import load_checkpoint

_ACT = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
}


def forward_probs(params: dict, activation: str, x: np.ndarray) -> np.ndarray:
    """softmax of the MLP whose layers are params['<i>.weight'] (in, out) and '<i>.bias'."""
    layers = sorted({int(k.split(".")[0]) for k in params})
    h = np.asarray(x, np.float64)
    for n, i in enumerate(layers):
        h = h @ params[f"{i}.weight"].astype(np.float64) + params[f"{i}.bias"].astype(np.float64)
        if n < len(layers) - 1:
            h = _ACT[activation](h)
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def checkpoint_probs(path, x) -> np.ndarray:
    ckpt = load_checkpoint(path, rank=None)
    return forward_probs(ckpt.arrays["params"], ckpt.meta["config"]["activation"], x)


def val_arrays(directory):
    """(x, y) of <directory>/val read straight from the HDF5 shards, in manifest order."""
    import json

    import h5py

    base = f"{directory}/val"
    manifest = json.load(open(f"{base}/manifest.json"))
    xs, ys = [], []
    for shard in manifest["shards"]:
        with h5py.File(f"{base}/{shard['path']}", "r") as f:
            xs.append(f["features"][...].reshape(shard["records"], -1).astype(np.float32))
            ys.append(f["labels"][...].astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)
