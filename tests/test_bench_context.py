"""Every benchmark starts by saying what it runs on: commit, CPU, cores, load, MPI."""

import os
import subprocess
import sys

from launch import ROOT, clean_env

from hpcdist.bench import context


def test_header_names_commit_cpu_cores_load_and_mpi():
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = context.header("reader --repeat 3").splitlines()
    assert lines[0].startswith("# hpcdist.bench reader --repeat 3, 20")
    assert lines[1].startswith(f"# commit {head}")
    assert f"{os.cpu_count()} cores; load average " in lines[2]
    assert lines[2].split("CPU ")[1].split(",")[0] == context.cpu_model()
    assert "MPI" in lines[3] or "MPICH" in lines[3] or "Open MPI" in lines[3]
    assert context.footer().startswith("# load average ")


def test_the_dispatcher_prints_it_before_the_benchmark():
    out = subprocess.run(
        [sys.executable, "-m", "hpcdist.bench", "train", "--help"],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith("# hpcdist.bench train --help")
    assert lines[1].startswith("# commit ") and lines[2].startswith("# CPU ")
    assert any(line.startswith("usage: python -m hpcdist.bench train") for line in lines[4:])
