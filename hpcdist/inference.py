"""A trained model for inference: from a checkpoint or an int8 file; its data; softmax.

    model = inference.load_model("runs/a/checkpoints/ckpt-0000000890.h5")
    x, y = inference.split_arrays(model.data_directory(guard), "val")
    p = inference.probabilities(model.net, x)          # (N, C) float32

Used by python -m hpcdist.predict, hpcdist.ensemble and hpcdist.quantize. No MPI.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import build, nn
from .backend import get_array_module, to_numpy
from .config import TrainConfig
from .errors import CheckpointError


@dataclass
class LoadedModel:
    """A model ready for forward passes, with the config it was trained with."""

    path: Path
    net: nn.Module
    config: TrainConfig
    num_features: int
    num_classes: int
    fingerprint: str | None
    quantized: bool

    def data_directory(self, guard=None) -> Path:
        """The data set the model was trained on (built/cached as training did).

        Collective over `guard`'s communicator; without one, this process alone builds
        what is missing (safe while others do the same: the build renames atomically).
        """
        if guard is not None:
            return build.data_directory(self.config, guard)
        from mpi4py import MPI

        from .guard import Guard

        own = Guard(MPI.COMM_SELF, name="data set")
        try:
            return build.data_directory(self.config, own)
        finally:
            own.free()


def read_weights(path: str | os.PathLike) -> tuple[dict, dict, bool]:
    """(float32 parameters by name, meta, whether the file is int8) of a checkpoint or Q.h5."""
    from . import quantize
    from .ckptfile import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such model file {path}")
    if quantize.is_quantized(path):
        params, meta = quantize.load(path)
        return params, meta, True
    ckpt = load_checkpoint(path, rank=None)
    if "params" not in ckpt.arrays:
        raise CheckpointError(f"checkpoint {path} holds no params/ group")
    return ckpt.arrays["params"], ckpt.meta, False


def load_model(path: str | os.PathLike, xp=np) -> LoadedModel:
    """The MLP in `path` (a trainer's checkpoint or a quantized file), in eval mode, on `xp`."""
    params, meta, quantized = read_weights(path)
    if "config" not in meta:
        raise CheckpointError(f"{path} holds no training config (meta['config'])")
    cfg = TrainConfig.from_dict(meta["config"], where=f"{path}: ")
    weights = sorted(
        (k for k in params if k.endswith(".weight")), key=lambda k: int(k.split(".")[0])
    )
    if not weights:
        raise CheckpointError(f"{path}: no layer weights among {sorted(params)}")
    n_in, n_out = params[weights[0]].shape[0], params[weights[-1]].shape[1]
    net = build.model(cfg, n_in, n_out, xp, 0)
    try:
        net.load_state_dict(params)
    except ValueError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the config's model: {exc}") from None
    net.eval()
    return LoadedModel(Path(path), net, cfg, n_in, n_out, meta.get("data_fingerprint"), quantized)


def probabilities(net: nn.Module, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """softmax(net(x)) as (N, C) float32 on the host, computed in batches."""
    xp = get_array_module(net.parameters()[0].data)
    out = []
    for lo in range(0, len(x), batch):
        logits = net.forward(xp.asarray(x[lo : lo + batch], dtype=xp.float32))
        z = logits - logits.max(axis=1, keepdims=True)
        e = xp.exp(z)
        out.append(to_numpy(e / e.sum(axis=1, keepdims=True)).astype(np.float32))
    if not out:
        n_classes = net.parameters()[-1].data.shape[-1]
        return np.zeros((0, n_classes), np.float32)
    return np.concatenate(out)


def split_arrays(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every record of `directory`/<split> in file order: (features (N, D) float32, labels (N,))."""
    from . import datasets
    from .data import HDF5Source

    info = datasets.read_split(directory, split)
    source = HDF5Source(str(info.directory))
    xs, ys = [], []
    for i, n in enumerate(source.counts):
        if n:
            x, y = source.read(i, 0, n)
            xs.append(np.asarray(x, np.float32).reshape(n, -1))
            ys.append(np.asarray(y).astype(np.int64))
    source.close()
    return np.concatenate(xs), np.concatenate(ys)


def refused(guard, error: str | None, what: str, prog: str) -> bool:
    """Whether any rank's check failed (collective): rank 0 prints the first rank's error,
    naming `prog`, and every rank gets True, so all of them exit 2 together."""
    errors = [e for e in guard.allgather(error, what=what) if e]
    if errors and guard.rank == 0:
        print(f"{prog}: error: {errors[0]}", file=sys.stderr)
    return bool(errors)
