"""Post-training int8 quantization: `python -m hpcdist.quantize --checkpoint CKPT --output Q.h5`.

Every 2-D weight W (in, out) is stored as int8 q with one float32 scale per
output channel: scale_j = max_i |W_ij| / 127, q = round(W / scale_j) clipped to
[-127, 127] (symmetric, as TensorRT and PyTorch's per-channel observers do).
Biases stay float32. Loading dequantizes (q * scale) to float32, so predict and
ensemble take a Q.h5 wherever they take a checkpoint. The command reports the
bytes against the float32 weights and the validation accuracy before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np

from .errors import CheckpointError

FORMAT = "hpcdist-int8"
VERSION = 1


def quantize_array(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 of w's shape, scale float32 per column) for a 2-D w; w ~= q * scale."""
    w = np.asarray(w, np.float32)
    if w.ndim != 2:
        raise ValueError(f"quantize_array wants a 2-D weight, got shape {w.shape}")
    amax = np.abs(w).max(axis=0)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def quantize_params(params: dict) -> tuple[dict, dict]:
    """({name: (q, scale)} for the weights, {name: float32} for the rest)."""
    ints, floats = {}, {}
    for name, a in params.items():
        a = np.asarray(a)
        if a.ndim == 2:
            ints[name] = quantize_array(a)
        else:
            floats[name] = a.astype(np.float32)
    return ints, floats


def nbytes(ints: dict, floats: dict) -> int:
    """Bytes of the quantized model's arrays (int8 weights, float32 scales and biases)."""
    return sum(q.nbytes + s.nbytes for q, s in ints.values()) + sum(
        a.nbytes for a in floats.values()
    )


def write(path: str | os.PathLike, ints: dict, floats: dict, meta: dict, source: str) -> Path:
    """Write the int8 model file (atomically: temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format=FORMAT, version=VERSION, meta=json.dumps(meta), source=source)
        for name, (q, scale) in ints.items():
            f[f"int8/{name}/q"] = q
            f[f"int8/{name}/scale"] = scale
        for name, a in floats.items():
            f[f"float32/{name}"] = a
    os.replace(tmp, path)
    return path


def is_quantized(path: str | os.PathLike) -> bool:
    """Whether `path` is an int8 model file written by write()."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


def load(path: str | os.PathLike) -> tuple[dict, dict]:
    """(float32 parameters, dequantized; meta) of an int8 model file."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or int(f.attrs.get("version", 0)) != VERSION:
                raise CheckpointError(f"{path} is not an {FORMAT} v{VERSION} file")
            params = {
                name: f[f"int8/{name}/q"][...].astype(np.float32) * f[f"int8/{name}/scale"][...]
                for name in f.get("int8", {})
            }
            params.update({name: f[f"float32/{name}"][...] for name in f.get("float32", {})})
            meta = json.loads(f.attrs["meta"])
    except (OSError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: unreadable int8 model ({type(exc).__name__}: {exc})"
        ) from exc
    return params, meta


def accuracy(path, x, y) -> float:
    from .inference import load_model, probabilities

    return float(np.mean(probabilities(load_model(path).net, x).argmax(axis=1) == y))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.quantize", description=__doc__.split("\n")[0]
    )
    p.add_argument("--checkpoint", required=True, help="a trainer's checkpoint file")
    p.add_argument("--output", required=True, help="the int8 model file to write (Q.h5)")
    p.add_argument("--split", default="val", help="the split the accuracy is measured on")
    args = p.parse_args(argv)
    from .inference import load_model, read_weights, split_arrays

    try:
        params, meta, was_int8 = read_weights(args.checkpoint)
        if was_int8:
            raise CheckpointError(f"{args.checkpoint} is already quantized")
        ints, floats = quantize_params(params)
        out = write(args.output, ints, floats, meta, str(args.checkpoint))
        x, y = split_arrays(load_model(args.checkpoint).data_directory(), args.split)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"hpcdist.quantize: error: {exc}", file=sys.stderr)
        return 2
    before = sum(np.asarray(a).size * 4 for a in params.values())
    after = nbytes(ints, floats)
    a0, a1 = accuracy(args.checkpoint, x, y), accuracy(out, x, y)
    print(
        f"hpcdist.quantize: {out}: {after:,} bytes against {before:,} float32 "
        f"({after / before:.3f}x); "
        f"{args.split} accuracy {a0:.4f} -> {a1:.4f} ({100 * (a1 - a0):+.2f} points)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
