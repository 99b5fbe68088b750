"""Run the whole test suite under mpiexec at world sizes 1, 2, 3 and 4.

    python tests/run_suite.py [--sizes 1,2,3,4] [pytest args...]

World size 1 runs every test; larger sizes run the tests marked `mpi`
(pytest-mpi's --only-mpi). Rank 0 prints to the terminal; every other rank
writes a log under $TMPDIR, shown in full when that rank fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch import ROOT, clean_env, mpiexec  # noqa: E402

COUNT_RE = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")


def summary_counts(text: str) -> dict[str, int]:
    """Counts from pytest's closing line ('3 failed, 40 passed, 2 skipped in 9.1s')."""
    lines = [
        ln for ln in text.splitlines() if re.search(r"\b(passed|failed|error|skipped)\b.* in ", ln)
    ]
    counts: dict[str, int] = {}
    for number, word in COUNT_RE.findall(lines[-1] if lines else ""):
        counts[word.rstrip("s") if word.startswith("error") else word] = int(number)
    return counts


def _run_echoing(cmd: list[str], env: dict, log: Path, timeout: float) -> int:
    """Run cmd, echoing its output (rank 0's) to the terminal and into `log`."""
    with (
        open(log, "w") as out,
        subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            out.write(line)
        watchdog.cancel()
        rc = proc.wait()
    if rc == -9:
        print(f"the suite passed its {timeout:.0f} s limit and was killed", flush=True)
    return rc


def run_size(n: int, pytest_args: list[str], logdir: Path, timeout: float) -> tuple[int, dict]:
    # pytest-mpi: --with-mpi runs everything, --only-mpi just the tests marked mpi.
    mode = "--with-mpi" if n == 1 else "--only-mpi"
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", "pytest", mode]
    cmd += ["-p", "no:cacheprovider", *pytest_args]
    env = clean_env({"HPCDIST_RANK_LOGS": str(logdir / f"np{n}")})
    print(f"\n===== world size {n}: {' '.join(cmd[3:])}", flush=True)
    start = time.monotonic()
    (logdir / f"np{n}").mkdir(parents=True, exist_ok=True)
    rc = _run_echoing(cmd, env, logdir / f"np{n}" / "rank0.log", timeout)
    counts: dict[str, int] = {}
    for log in sorted((logdir / f"np{n}").glob("rank*.log")):
        text = log.read_text(errors="replace")
        rank_counts = summary_counts(text)
        if rank_counts.get("failed") or rank_counts.get("error") or not rank_counts:
            print(f"----- {log.name} (world size {n}) -----\n{text[-20000:]}", flush=True)
        if log.name == "rank0.log":
            counts = rank_counts
    print(
        f"===== world size {n}: exit {rc}, {time.monotonic() - start:.0f} s, {counts}", flush=True
    )
    return rc, counts


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default=os.environ.get("HPCDIST_TEST_SIZES", "1,2,3,4"))
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per world size")
    args, pytest_args = p.parse_known_args()
    logdir = Path(tempfile.mkdtemp(prefix="hpcdist-tests-"))
    total: dict[str, int] = {}
    failed_sizes = []
    for n in [int(s) for s in args.sizes.split(",")]:
        rc, counts = run_size(n, pytest_args or ["-q"], logdir, args.timeout)
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        if rc != 0 or not counts:
            failed_sizes.append(n)
    failed = total.get("failed", 0) + total.get("error", 0)
    if failed_sizes and not failed:
        failed = len(failed_sizes)  # a size that crashed or timed out without a count
    print(f"\nsizes {args.sizes}; failing sizes: {failed_sizes or 'none'}; logs: {logdir}")
    passed, skipped = total.get("passed", 0), total.get("skipped", 0)
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed_sizes else 0


if __name__ == "__main__":
    raise SystemExit(main())
