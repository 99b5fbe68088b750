"""Every benchmark starts by saying what it runs on: commit, CPU, cores, load, MPI.

Each figure the header and footer print is checked against a source the test reads
itself (git, /proc/cpuinfo, os.getloadavg, the clock, mpi4py, numpy), not against
the functions in hpcdist.bench.context that produced it.
"""

import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from launch import ROOT, clean_env, run_mpi
from mpi4py import MPI

from hpcdist.bench import context

#: How far a printed load average may be from os.getloadavg() read a moment later.
LOAD_TOLERANCE = 2.0
#: How far the header's timestamp may be from now.
CLOCK_TOLERANCE_S = 180
_LOAD = r"(\d+\.\d\d) (\d+\.\d\d) (\d+\.\d\d)"
_FOOTER = re.compile(rf"# load average {_LOAD} at the end, (\d+) s in all")
#: A benchmark that takes NOOP_SECONDS and prints one line, registered in a child process.
NOOP_SECONDS = 1.5
_NOOP = f"""
import sys, time, types
import hpcdist.bench.__main__ as dispatcher
noop = types.ModuleType("hpcdist.bench.noop")
def main(args):
    time.sleep({NOOP_SECONDS})
    print("BODY", *args, flush=True)
noop.main = main
sys.modules["hpcdist.bench.noop"] = noop
dispatcher.BENCHMARKS["noop"] = "sleeps, then prints its arguments"
raise SystemExit(dispatcher.main(sys.argv[1:]))
"""


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def _expected_commit() -> str:
    """HEAD's short hash, plus '+changes' when a tracked file differs from it."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return _git("rev-parse", "--short", "HEAD") + ("+changes" if dirty else "")


def _cpu_model_from_proc() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no 'model name' line in /proc/cpuinfo")


def _assert_load_is_now(printed: tuple) -> None:
    loads = [float(x) for x in printed]
    assert all(x >= 0 for x in loads), loads
    for got, now in zip(loads, os.getloadavg(), strict=True):
        assert abs(got - now) <= LOAD_TOLERANCE, (loads, os.getloadavg())


def _assert_header(lines: list, name: str) -> None:
    """The four header lines for `python -m hpcdist.bench NAME`, each figure checked."""
    stamp = re.fullmatch(
        rf"# hpcdist\.bench {re.escape(name)}, (\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", lines[0]
    )
    assert stamp, lines[0]
    when = datetime.datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - when).total_seconds()) <= CLOCK_TOLERANCE_S, (stamp[1], now)

    assert lines[1] == f"# commit {_expected_commit()}, host {os.uname().nodename}"

    cpu = re.fullmatch(
        rf"# CPU {re.escape(_cpu_model_from_proc())}, {os.cpu_count()} cores; "
        rf"load average {_LOAD} at the start",
        lines[2],
    )
    assert cpu, lines[2]
    _assert_load_is_now(cpu.groups())

    library = MPI.Get_library_version().splitlines()[0].strip()
    assert lines[3] == (f"# {library}; Python {platform.python_version()}, numpy {np.__version__}")


def _bench(args: list, extra_env: dict | None = None, script: str | None = None):
    cmd = [sys.executable, *(["-c", script] if script else ["-m", "hpcdist.bench"]), *args]
    start = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=clean_env(extra_env), cwd=ROOT, timeout=120
    )
    return proc, time.monotonic() - start


def test_header_names_commit_cpu_cores_load_and_mpi():
    """The header's commit, host, CPU, cores, load, MPI, Python and numpy are the real ones.

    Planted bug it catches: commit() dropping '+changes' on a dirty tree (or adding it on a
    clean one), cpu_model() returning platform.processor() ('x86_64') on Linux, the time
    printed in local time and labelled UTC, the load printed in percent (or as a fixed 0.00
    on a loaded machine), or the MPI line naming mpi4py's version instead of the library's.
    """
    lines = context.header("reader --repeat 3").splitlines()
    assert len(lines) == 4, lines
    _assert_header(lines, "reader --repeat 3")

    footer = _FOOTER.fullmatch(context.footer())
    assert footer, context.footer()
    _assert_load_is_now(footer.groups()[:3])


def test_the_dispatcher_prints_it_before_the_benchmark():
    """`python -m hpcdist.bench NAME` prints the header, then the benchmark, then the footer.

    Planted bug it catches: the footer printed before the benchmark runs (or not at all),
    its 'N s in all' measured from the wrong start (0 s, or the epoch), or the header printed
    after the benchmark's own output.
    """
    proc, elapsed = _bench(["noop", "--size", "7"], script=_NOOP)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 6, lines
    _assert_header(lines[:4], "noop --size 7")
    assert lines[4] == "BODY --size 7"
    footer = _FOOTER.fullmatch(lines[-1])
    assert footer, lines[-1]
    _assert_load_is_now(footer.groups()[:3])
    seconds = int(footer[4])
    # Printed rounded to whole seconds: at least the benchmark's sleep, at most the run.
    assert 1 <= seconds <= elapsed + 0.5, (seconds, elapsed)

    proc, _ = _bench(["train", "--help"])
    lines = proc.stdout.splitlines()
    _assert_header(lines[:4], "train --help")
    assert lines[4].startswith("usage: python -m hpcdist.bench train"), lines[4]


def test_only_the_first_rank_prints_the_context():
    """Under mpiexec -n 2 one header and one footer are printed, by rank 0, around both bodies.

    Planted bug it catches: the rank test reading only OMPI_COMM_WORLD_RANK (or a typo in
    one of the launcher variables), so under MPICH's hydra or srun every rank prints a header
    and the footer, and the output is interleaved.
    """
    job = run_mpi(2, ["-c", _NOOP, "noop", "--size", "7"], cwd=ROOT)
    assert job.returncode == 0, job.output
    lines = job.stdout.splitlines()
    assert len(lines) == 7, lines
    _assert_header(lines[:4], "noop --size 7")
    assert lines[4:6] == ["BODY --size 7"] * 2, lines
    assert _FOOTER.fullmatch(lines[6]), lines[6]

    # Each launcher's variable on its own. PMIX_RANK is left out: a fake one makes MPICH's
    # MPI_Init (run by `import hpcdist`) look for a PMIx server and abort.
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        proc, _ = _bench(["noop", "--size", "7"], extra_env={var: "1"}, script=_NOOP)
        assert proc.returncode == 0, (var, proc.stdout + proc.stderr)
        assert proc.stdout.splitlines() == ["BODY --size 7"], (var, proc.stdout)


def test_an_unknown_benchmark_is_refused_with_exit_code_2():
    """An unknown name prints the usage with every benchmark and exits 2, before any header.

    Planted bug it catches: the dispatcher returning 0 for a misspelt name (a CI job running
    `hpcdist.bench allreduse` passes), or importing hpcdist.bench.NAME and dying with a
    ModuleNotFoundError traceback instead of the usage.
    """
    proc, _ = _bench(["allreduse"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "usage: python -m hpcdist.bench NAME [options]"
    assert not any(line.startswith("# ") for line in lines), lines
    listed = {line.split()[0] for line in lines[3:] if line.strip()}
    assert {"allreduce", "reader", "train"} <= listed, lines
    assert "Traceback" not in proc.stderr, proc.stderr
