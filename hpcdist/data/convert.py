"""python -m hpcdist.data.convert: CSV / .npz / .npy -> N chunked HDF5 shards + manifest."""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from ..errors import DataError
from ..progress import Progress
from .readers import CSVReader, RecordKey, decode_line
from .sources import read_manifest, write_manifest


def _progress(total: int, desc: str) -> Progress:
    """A bar on a terminal, else a line every 10 s and one at the end (hpcdist.progress)."""
    return Progress(total, desc, stream=sys.stderr, unit="records", every_s=10.0)


def _columns_of(path: str, skip_header: int) -> int:
    """The number of fields on the first data line of a CSV file."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno <= skip_header or not raw.strip():
                continue
            line = decode_line(RecordKey(path, lineno), raw, _refuse)
            return len(next(csv.reader([line])))
    raise DataError(f"{path}: no data lines after {skip_header} header line(s)")


def _refuse(key, why, raw="") -> None:
    raise DataError(f"{key}: bad record: {why}")


def parse_record_defaults(text: str, ncols: int, label: int) -> list:
    """--record-defaults "0,,1.5,0": one entry per column, empty = required (TF's decode_csv)."""
    entries = next(csv.reader([text]))
    if len(entries) != ncols:
        raise DataError(f"--record-defaults has {len(entries)} entries, the CSV {ncols} columns")
    out = []
    for i, e in enumerate(entries):
        typ = int if i == label else float
        try:
            out.append(typ if e.strip() == "" else typ(e))
        except ValueError:
            why = f"{e!r} is not {typ.__name__}"
            raise DataError(f"--record-defaults entry {i + 1}: {why}") from None
    return out


def load_csv(
    paths,
    label_column: int,
    skip_header: int,
    on_bad: str,
    quarantine,
    *,
    record_defaults: str | None = None,
    num_classes: int | None = None,
):
    """All records of CSV files: float32 features, int64 labels (from label_column).

    A label outside [0, num_classes) (or negative) is a bad record, under the same
    policy as a field that does not parse.
    """
    ncols = _columns_of(paths[0], skip_header)
    label = label_column % ncols
    if record_defaults is None:
        defaults = [float] * ncols
        defaults[label] = int
    else:
        defaults = parse_record_defaults(record_defaults, ncols, label)
    reader = CSVReader(
        paths, defaults, skip_header_lines=skip_header, on_bad=on_bad, quarantine_path=quarantine
    )
    dtypes = ["f4"] * ncols
    dtypes[label] = "i8"
    xs, ys = [], []
    for keys, cols in reader.blocks(65536, dtypes):
        ok = _labels_in_range(reader, keys, cols[label], num_classes)
        ys.append(cols[label][ok])
        xs.append(np.stack([c[ok] for i, c in enumerate(cols) if i != label], axis=1))
    if not xs or not sum(len(y) for y in ys):
        raise DataError(f"{paths}: no usable records")
    return np.concatenate(xs), np.concatenate(ys), reader.stats


def _labels_in_range(reader, keys, labels, num_classes):
    """Mask of records whose label is a class; the others go to the reader's bad policy."""
    hi = num_classes if num_classes is not None else np.iinfo(np.int64).max
    ok = (labels >= 0) & (labels < hi)
    for i in np.flatnonzero(~ok):
        want = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        reader.reject(keys[i], f"label {labels[i]} outside the classes {want}")
    return ok


def check_finite(x, where: str) -> None:
    """DataError naming the first record with NaN or inf among its features."""
    bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
    if bad.size:
        raise DataError(
            f"{where}: record {bad[0]}: NaN or inf among its features ({bad.size} such record(s))"
        )


def check_labels(y, num_classes, where: str) -> None:
    """DataError naming the first record whose label is not a class."""
    hi = num_classes if num_classes is not None else np.iinfo(np.int64).max
    bad = np.flatnonzero((y < 0) | (y >= hi))
    if bad.size:
        want = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise DataError(
            f"{where}: record {bad[0]}: label {y[bad[0]]} outside the classes {want} "
            f"({bad.size} such record(s))"
        )


def load_numpy(paths, features_key: str, labels_key: str, labels_path: str | None):
    xs, ys = [], []
    for p in paths:
        if p.endswith(".npz"):
            with np.load(p) as z:
                fk = features_key if features_key in z else "x"
                lk = labels_key if labels_key in z else "y"
                if fk not in z or lk not in z:
                    raise DataError(
                        f"{p}: needs arrays {features_key!r} and {labels_key!r} "
                        f"(or x and y), has {sorted(z.files)}"
                    )
                xs.append(z[fk])
                ys.append(z[lk])
        else:
            xs.append(np.load(p))
    x = np.concatenate(xs)
    if ys:
        y = np.concatenate(ys)
    elif labels_path:
        y = np.load(labels_path)
    else:
        raise DataError(f"{paths}: .npy features need --labels FILE.npy")
    if len(x) != len(y):
        raise DataError(f"{len(x)} feature rows but {len(y)} labels")
    return x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


def write_shards(
    x,
    y,
    outdir: str,
    num_shards: int,
    chunk_rows: int = 1024,
    prefix: str = "shard",
    compression: str | None = None,
    facts: dict | None = None,
) -> str:
    """Split records into num_shards files (chunked along samples); returns the manifest path.

    `compression` (h5py's name, e.g. "gzip" or "lzf") compresses the features; such
    shards are read through h5py (the ring read path), not by os.preadv.
    """
    import h5py

    os.makedirs(outdir, exist_ok=True)
    bounds = np.linspace(0, len(x), num_shards + 1).astype(np.int64)
    bar = _progress(len(x), "writing shards")
    shards = []
    for k in range(num_shards):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        name = f"{prefix}-{k:05d}.h5"
        rows = max(1, min(chunk_rows, hi - lo))
        with h5py.File(os.path.join(outdir, name), "w") as f:
            f.create_dataset(
                "features", data=x[lo:hi], chunks=(rows, *x.shape[1:]), compression=compression
            )
            f.create_dataset("labels", data=y[lo:hi], chunks=(rows,))
        shards.append({"path": name, "records": hi - lo})
        bar.update(hi - lo)
    bar.close()
    return write_manifest(
        outdir,
        shards,
        feature_shape=list(x.shape[1:]),
        feature_dtype=str(x.dtype),
        label_dtype=str(y.dtype),
        **(facts or {}),
    )


def verify(manifest: str, x=None, y=None) -> int:
    """Check every shard against the manifest (and the source arrays); returns records checked."""
    import h5py

    paths, counts, _ = read_manifest(manifest)
    start = 0
    for path, n in zip(paths, counts, strict=True):
        try:
            with h5py.File(path, "r") as f:
                fx, fy = f["features"][:], f["labels"][:]
        except (OSError, KeyError) as ex:
            raise DataError(f"{path}: unreadable shard ({ex})") from ex
        if len(fx) != n or len(fy) != n:
            raise DataError(f"{path}: manifest says {n} records, file has {len(fx)}/{len(fy)}")
        if x is not None and not (
            np.array_equal(fx, x[start : start + n], equal_nan=True)
            and np.array_equal(fy, y[start : start + n])
        ):
            raise DataError(f"{path}: contents differ from the input records {start}..{start + n}")
        start += n
    return start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdist.data.convert", description=__doc__)
    ap.add_argument("inputs", nargs="+", help=".csv, .npz or .npy files")
    ap.add_argument("-o", "--output", required=True, help="directory for shards + manifest.json")
    ap.add_argument("-n", "--shards", type=int, default=8)
    ap.add_argument("--chunk-rows", type=int, default=1024)
    ap.add_argument("--label-column", type=int, default=-1, help="CSV column of the label")
    ap.add_argument("--skip-header", type=int, default=0, help="CSV header lines")
    ap.add_argument("--on-bad", default="raise", choices=["raise", "skip", "default", "quarantine"])
    ap.add_argument("--quarantine", help="log of bad CSV records (with --on-bad quarantine)")
    ap.add_argument("--features-key", default="features")
    ap.add_argument("--labels-key", default="labels")
    ap.add_argument("--labels", help="labels .npy for .npy feature inputs")
    ap.add_argument("--verify", action="store_true", help="re-read the shards and compare")
    ap.add_argument(
        "--record-defaults",
        help='CSV: one default per column, empty for a required one ("0,,0.5,0"); an empty '
        "field then takes its column's default (counted as filled)",
    )
    ap.add_argument(
        "--num-classes", type=int, help="labels must lie in [0, K) (else: >= 0); in the manifest"
    )
    args = ap.parse_args(argv)
    if args.shards < 1:
        ap.error("--shards must be >= 1")
    try:
        return convert(args)
    except DataError as ex:  # bad input: one line naming the file and record, no traceback
        print(f"{ap.prog}: error: {ex}", file=sys.stderr)
        return 1


def convert(args) -> int:
    """The conversion main() parsed `args` for."""
    if all(p.endswith(".csv") for p in args.inputs):
        x, y, stats = load_csv(
            args.inputs,
            args.label_column,
            args.skip_header,
            args.on_bad,
            args.quarantine,
            record_defaults=args.record_defaults,
            num_classes=args.num_classes,
        )
        print(
            f"read {stats.records} records, skipped {stats.skipped}, "
            f"{stats.filled} field(s) filled from defaults",
            file=sys.stderr,
        )
    else:
        x, y = load_numpy(args.inputs, args.features_key, args.labels_key, args.labels)
        check_labels(y, args.num_classes, ", ".join(args.inputs))
        check_finite(x, ", ".join(args.inputs))
    facts = {} if args.num_classes is None else {"num_classes": args.num_classes}
    manifest = write_shards(x, y, args.output, args.shards, args.chunk_rows, facts=facts)
    print(f"wrote {len(x)} records in {args.shards} shards: {manifest}")
    if args.verify:
        print(f"verified {verify(manifest, x, y)} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
