"""Run the whole test suite under mpiexec at world sizes 1, 2, 3 and 4.

    python tests/run_suite.py [--sizes 1,2,3,4] [pytest args...]

World size 1 runs every test; larger sizes run the tests marked `mpi`
(pytest-mpi's --only-mpi). Rank 0 prints to the terminal; every other rank
writes a log under $TMPDIR, shown in full when that rank fails.

Every rank's log is counted: a world size fails when mpiexec exits non-zero,
when any rank's summary line counts a failure or error, or when a rank's log
has no summary line (it was aborted or killed). A size's count of a kind is
the largest any rank reports (tests/conftest.py makes the ranks agree on each
mpi test's outcome, so a test failed on one rank is failed on all).
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
# pytest's closing line: "=== 3 failed, 40 passed, 2 warnings in 9.12s ===" (bare under -q).
SUMMARY_RE = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+|no tests ran) in \d+(?:\.\d+)?s\b")


def summary_counts(text: str) -> dict[str, int] | None:
    """Counts from pytest's closing line ('3 failed, 40 passed, 2 skipped in 9.1s'), or None
    when `text` has no such line (the run was aborted or killed before its summary)."""
    for line in reversed(text.splitlines()):
        match = SUMMARY_RE.match(line.strip())
        if match:
            counts: dict[str, int] = {}
            for number, word in COUNT_RE.findall(match.group(1)):
                key = "error" if word.startswith("error") else word
                counts[key] = int(number)
            return counts
    return None


def rank_failure(counts: dict[str, int] | None) -> str | None:
    """Why a rank with these summary counts failed, or None if it did not."""
    if counts is None:
        return "no summary line (aborted or killed)"
    bad = counts.get("failed", 0) + counts.get("error", 0)
    return f"{bad} failed or errors" if bad else None


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


def run_size(
    n: int, pytest_args: list[str], logdir: Path, timeout: float
) -> tuple[int, dict, dict]:
    # pytest-mpi: --with-mpi runs everything, --only-mpi just the tests marked mpi.
    mode = "--with-mpi" if n == 1 else "--only-mpi"
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", "pytest", mode]
    cmd += ["-p", "no:cacheprovider", *pytest_args]
    env = clean_env({"HPCDIST_RANK_LOGS": str(logdir / f"np{n}")})
    print(f"\n===== world size {n}: {' '.join(cmd[3:])}", flush=True)
    start = time.monotonic()
    (logdir / f"np{n}").mkdir(parents=True, exist_ok=True)
    rc = _run_echoing(cmd, env, logdir / f"np{n}" / "rank0.log", timeout)
    counts, failing = size_counts(n, logdir / f"np{n}")
    print(
        f"===== world size {n}: exit {rc}, {time.monotonic() - start:.0f} s, {counts}, "
        f"failing ranks: {failing or 'none'}",
        flush=True,
    )
    return rc, counts, failing


def size_counts(n: int, logs: Path) -> tuple[dict[str, int], dict[int, str]]:
    """The counts of one world size from every rank's log, and {rank: why} for failing ranks.

    A count is the largest any rank reports; a rank without a summary line adds
    one failure when no rank counted any (the job ended before its summary).
    """
    counts: dict[str, int] = {}
    failing: dict[int, str] = {}
    for rank in range(n):
        log = logs / f"rank{rank}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        rank_counts = summary_counts(text)
        why = rank_failure(rank_counts)
        if why:
            failing[rank] = why
            shown = text[-20000:] if rank else "(its output is above)"
            print(f"----- {log.name} (world size {n}): {why} -----\n{shown}", flush=True)
        for key, value in (rank_counts or {}).items():
            counts[key] = max(counts.get(key, 0), value)
    if failing and not counts.get("failed", 0) + counts.get("error", 0):
        counts["failed"] = 1  # no rank got to count the failure that ended the job
    return counts, failing


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
        rc, counts, failing = run_size(n, pytest_args or ["-q"], logdir, args.timeout)
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        if rc != 0 or failing:
            failed_sizes.append(n)
    failed = total.get("failed", 0) + total.get("error", 0)
    if failed_sizes and not failed:
        failed = len(failed_sizes)  # mpiexec failed although every rank's summary was clean
    print(f"\nsizes {args.sizes}; failing sizes: {failed_sizes or 'none'}; logs: {logdir}")
    passed, skipped = total.get("passed", 0), total.get("skipped", 0)
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed_sizes else 0


if __name__ == "__main__":
    raise SystemExit(main())
