"""`python -m hpcdist.bench overlap`: how much of the gradient exchange backward hides.

Runs `python -m hpcdist.train` at k ranks twice per repeat, with buckets
started from backward (--overlap) and after it (the default), alternating so both
meet the same load, each with --timeline. From every rank's trace it takes the
mean time per step spent in backward and in the exchange span (the wait in
synchronize()) after the first epoch, and reports

    hidden share = ((backward + exchange) without - (backward + exchange) with)
                   / exchange without

the part of the exchange that no longer adds to the step. 0 means nothing was
hidden; it can go negative when starting buckets early costs backward more
than it saves (a core shared by the rank's compute and its MPI progress).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from collections import defaultdict


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hpcdist.bench overlap")
    ap.add_argument("--ranks", type=int, default=4, help="world size (default 4)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each mode, alternating")
    ap.add_argument("--records-per-rank", type=int, default=4096)
    ap.add_argument("--features", type=int, default=784)
    ap.add_argument("--hidden", default="1024,1024", help="hidden sizes (default 1024,1024)")
    ap.add_argument("--batch", type=int, default=64, help="per-rank batch (default 64)")
    ap.add_argument("--epochs", type=int, default=2, help="the first is not timed")
    ap.add_argument("--bucket-bytes", type=int, default=None, help="default: the exchange's")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per run")
    return ap


def main(argv=None) -> int:
    """Entry point for the `overlap` benchmark; returns the exit status."""
    args = _parser().parse_args(argv)
    print(
        f"overlap of the gradient exchange with backward: python -m hpcdist.train at "
        f"{args.ranks} ranks, {args.records_per_rank} synthetic records x {args.features} "
        f"per rank, MLP {args.features},{args.hidden},10, batch {args.batch} per rank, "
        f"epochs 2..{args.epochs} timed; {os.cpu_count()} cores on {platform.node()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    results: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="hpcdist-overlap-") as workdir:
        for rep in range(args.repeats):
            for overlap in (True, False):
                r = _run(overlap, rep, args, workdir)
                results[overlap].append(r)
                print(
                    f"repeat {rep + 1} {'overlap' if overlap else 'no overlap':>10}: "
                    f"backward {r['backward']:.2f} ms, exchange {r['exchange']:.2f} ms "
                    f"per step ({r['steps']} steps x {args.ranks} ranks)",
                    flush=True,
                )
    _report(results)
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    return 0


def _run(overlap: bool, rep: int, args, workdir: str) -> dict:
    from ..launcher import run_mpi

    run_dir = os.path.join(workdir, f"r{rep}-{int(overlap)}")
    flags = [
        "-m", "hpcdist.train", "--synthetic", str(args.ranks * args.records_per_rank),
        "--synthetic-features", str(args.features), "--hidden", args.hidden,
        "--batch-size", str(args.batch), "--epochs", str(args.epochs), "--run-dir", run_dir,
        "--checkpoint-every", "0", "--no-progress", "--device", "cpu", "--timeline",
    ]  # fmt: skip
    if overlap:
        flags.append("--overlap")
    if args.bucket_bytes:
        flags += ["--bucket-bytes", str(args.bucket_bytes)]
    env = {"HPCDIST_CACHE": os.path.join(workdir, "cache")}
    res = run_mpi(args.ranks, flags, timeout=args.timeout, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"train failed (exit {res.returncode}):\n{res.output[-3000:]}")
    return step_times(os.path.join(run_dir, "timeline.json"))


def step_times(path: str) -> dict:
    """Mean ms per step in backward and exchange over every rank, after the first epoch
    (each rank's trace cut at its own first eval: ranks and their clocks drift apart)."""
    with open(path, encoding="utf-8") as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    first_eval: dict = {}
    for e in events:
        if e["name"] == "eval":
            first_eval[e["pid"]] = min(e["ts"], first_eval.get(e["pid"], e["ts"]))
    spans: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e["name"] in ("backward", "exchange") and e["ts"] > first_eval.get(e["pid"], 0.0):
            spans[e["name"]].append(e["dur"] / 1e3)
    steps = len(spans["backward"]) // max(1, len({e["pid"] for e in events}))
    return {
        "backward": statistics.fmean(spans["backward"]),
        "exchange": statistics.fmean(spans["exchange"]),
        "steps": steps,
    }


def _report(results: dict[bool, list[dict]]) -> None:
    med = {
        k: {part: statistics.median(r[part] for r in rs) for part in ("backward", "exchange")}
        for k, rs in results.items()
    }
    on, off = med[True], med[False]
    total_on, total_off = on["backward"] + on["exchange"], off["backward"] + off["exchange"]
    hidden = (total_off - total_on) / off["exchange"] if off["exchange"] > 0 else 0.0
    print(
        f"median over repeats: with overlap backward+exchange {total_on:.2f} ms "
        f"({on['backward']:.2f} + {on['exchange']:.2f}), without {total_off:.2f} ms "
        f"({off['backward']:.2f} + {off['exchange']:.2f})"
    )
    print(f"hidden share of the exchange: {hidden:.0%}")
