"""Helpers of the fault tests: wait for a job to get under way, signal it, time its end."""

import os
import signal
import subprocess
import time

import pytest


def wait_for(cond, timeout: float, proc) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"job ended early with {proc.returncode}"
        assert time.monotonic() < deadline, "the job never got under way"
        time.sleep(0.05)


def interrupt(proc, sig=signal.SIGINT, group=True, limit=15.0) -> float:
    """Send `sig`; the seconds until the job ended (it is killed past `limit`)."""
    t0 = time.monotonic()
    os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"still running {limit:.0f} s after {sig.name}")
    return time.monotonic() - t0
