"""The multi-host bed of tests/hosts/bed.sh from Python: up, run a job across it, down."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from ..launcher import ROOT, Result, clean_env, mpiexec

#: The bed's shell scripts (a checkout's tests/hosts).
SCRIPTS = ROOT / "tests" / "hosts"
_RATE = re.compile(r"^\d+(gbit|mbit|kbit)$", re.IGNORECASE)


class BedUnavailable(RuntimeError):
    """Network namespaces or rate-limited links cannot be made here (why in the message)."""


def _script() -> Path:
    path = SCRIPTS / "bed.sh"
    if not path.exists():
        raise BedUnavailable(f"{path} not found: the host bed needs a checkout of hpcdist")
    return path


def check_rate(rate: str) -> str:
    """A tc rate like '5gbit', else ValueError naming the setting."""
    if not _RATE.match(rate):
        raise ValueError(f"--link: expected a rate like 5gbit, 500mbit or 100kbit, got {rate!r}")
    return rate.lower()


class HostBed:
    """N namespaces joined by `rate` links; a context manager that always tears them down.

    `name` must be unique among beds that may be up at once (default: one per process).
    """

    def __init__(self, hosts: int, rate: str = "5gbit", *, name: str | None = None):
        if hosts < 1:
            raise ValueError(f"hosts must be >= 1, got {hosts}")
        self.hosts, self.rate = hosts, check_rate(rate)
        self.name = name or f"hpcd{os.getpid()}"
        self.env = {"HPCDIST_BED": self.name, "HPCDIST_MPIEXEC": mpiexec()}
        self.up = False

    def _bed(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = ["bash", str(_script()), *args]
        env = {**os.environ, **self.env}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

    def check(self) -> None:
        """BedUnavailable unless namespaces and tbf links can be made here."""
        res = self._bed("check")
        if res.returncode != 0:
            raise BedUnavailable(res.stderr.strip() or f"bed.sh check exited {res.returncode}")

    def __enter__(self) -> HostBed:
        self.check()
        res = self._bed("up", str(self.hosts), self.rate)
        self.up = True  # a half-made bed is still torn down
        if res.returncode != 0:
            self.close()
            raise BedUnavailable(f"bed.sh up {self.hosts} {self.rate}: {res.stderr.strip()}")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.up:
            self._bed("down")
            self.up = False

    def command(self, per_host: int, args: list[str]) -> list[str]:
        """The command line that runs `python ARGS` with `per_host` ranks on every host."""
        return ["bash", str(_script()), "run", str(per_host), sys.executable, *args]

    def run(self, per_host: int, args: list[str], timeout: float = 180, env=None) -> Result:
        """Run `python ARGS` across the bed; TimeoutExpired if it outlives `timeout`."""
        start = time.monotonic()
        proc = subprocess.run(
            self.command(per_host, args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env({**self.env, **(env or {})}),
            cwd=ROOT,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    def link_bytes(self, host: int) -> int:
        """Bytes host `host` has sent on its link so far."""
        out = subprocess.run(
            ["ip", "-n", f"{self.name}-h{host}", "-s", "-j", "link", "show", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])
