"""`python -m hpcdist.inspect PATH`: what a checkpoint holds, verified, with h5py only.

PATH is a checkpoint file, a checkpoints/ directory or a run directory (then
its newest checkpoint). Prints the header (step, epoch, world size, format,
when written), the run's main settings from `meta`, every array group with
shapes, dtypes and sizes, and whether every checksum holds (every rank's
slot is read). Exit status 0 for a good file, 1 for a bad one (the reason is
printed), 2 when PATH holds no checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import h5py

from .ckptfile import load_checkpoint
from .errors import CheckpointError

#: Settings shown from the checkpoint's config (the rest: --config).
SHOWN = ("model", "hidden", "activation", "optimizer", "lr", "batch_size", "seed", "exchange")


def find(path: Path) -> Path | None:
    """The checkpoint file PATH names: itself, or the newest in it or in its checkpoints/."""
    if path.is_file():
        return path
    for directory in (path, path / "checkpoints"):
        files = sorted(directory.glob("ckpt-*.h5")) if directory.is_dir() else []
        if files:
            return files[-1]
    return None


def describe(path: Path, show_config: bool = False) -> list[str]:
    """The lines printed for one file (read with h5py; nothing is verified here)."""
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        groups: dict[str, list[str]] = defaultdict(list)

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                group, _, leaf = name.rpartition("/")
                size = _size(obj.size * obj.dtype.itemsize)
                groups[group].append(f"    {leaf:24s} {str(obj.shape):12s} {obj.dtype!s:8s} {size}")

        f.visititems(visit)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(attrs.get("created", 0))))
    lines = [
        str(path),
        f"  step {int(attrs['step'])}, epoch {int(attrs['epoch'])}, written by "
        f"{int(attrs['world_size'])} rank slot(s), format {int(attrs['format_version'])}, {when}",
    ]
    meta = json.loads(attrs.get("meta", "{}"))
    config = meta.get("config", {})
    if config:
        shown = config if show_config else {k: config[k] for k in SHOWN if k in config}
        lines.append("  config  " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    other = sorted(k for k in meta if k != "config")
    if other:
        lines.append(f"  meta    {', '.join(other)}")
    for group in sorted(groups):
        lines.append(f"  {group}/")
        lines += sorted(groups[group])
    return lines


def _size(nbytes: int) -> str:
    return f"{nbytes} B" if nbytes < 1024 else f"{nbytes / 1024:.1f} KiB"


def verify(path: Path) -> str | None:
    """None when every slot of the file passes load_checkpoint, else the first reason."""
    with h5py.File(path, "r") as f:
        slots = int(f.attrs["world_size"])
    try:
        for slot in range(max(slots, 1)):
            load_checkpoint(path, rank=slot if slots else None, world_size=slots)
    except CheckpointError as e:
        return str(e)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hpcdist.inspect", description=__doc__.split("\n")[0]
    )
    ap.add_argument("path", type=Path, help="a checkpoint file, checkpoints/ dir or run dir")
    ap.add_argument("--config", action="store_true", help="print every setting of the run")
    args = ap.parse_args(argv)
    path = find(args.path)
    if path is None:
        print(f"hpcdist.inspect: no checkpoint (ckpt-*.h5) at {args.path}", file=sys.stderr)
        return 2
    try:
        lines = describe(path, args.config)
    except (OSError, KeyError, ValueError) as e:
        print(f"hpcdist.inspect: {path} is not a readable checkpoint: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    problem = verify(path)
    print("  verified: every checksum holds" if problem is None else f"  BAD: {problem}")
    return 0 if problem is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
