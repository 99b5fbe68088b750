"""Progress on rank 0 that fits where it goes: a live bar on a terminal, lines in a log.

    with Progress(steps, "epoch 3/40", enabled=is_root) as bar:
        for ...:
            bar.update(1, **{"rank 0 running loss": 0.41})

Under mpirun no rank's stdout is a terminal (the launcher forwards a pipe),
so `mode="auto"` asks whether the launcher's own output is one: it walks up
the process tree to the first mpiexec/mpirun/srun/... and reads where that
process's standard output goes (/proc/<pid>/fd/1). A terminal gets a tqdm
bar; anything else (a file, a SLURM log, a pipe) gets plain lines with no
carriage returns: one when `every_s` seconds have passed and one at close,
each with the elapsed time and an ETA, so a short epoch is one line.
$HPCDIST_PROGRESS=bar|lines|off overrides the choice.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

MODES = ("auto", "bar", "lines", "off")
#: Process names of the launchers that forward a rank's output.
LAUNCHERS = ("mpiexec", "mpirun", "mpiexec.hydra", "orterun", "prterun", "srun", "aprun")


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def launched_from_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stdout) or the launcher's own stdout is a terminal."""
    stream = stream if stream is not None else sys.stdout
    if getattr(stream, "isatty", lambda: False)():
        return True
    try:
        pid = os.getpid()
        for _ in range(8):  # the rank, hydra's proxy, the launcher, ... a few levels at most
            pid = _parent(pid)
            if pid <= 1:
                return False
            with open(f"/proc/{pid}/comm", encoding="ascii", errors="replace") as f:
                name = f.read().strip()
            if name in LAUNCHERS:
                target = os.readlink(f"/proc/{pid}/fd/1")
                return target.startswith(("/dev/pts/", "/dev/tty"))
    except (OSError, ValueError, IndexError):
        return False  # no /proc (not Linux) or not ours to read: plain lines are safe
    return False


def choose_mode(mode: str = "auto", stream: TextIO | None = None) -> str:
    """'bar', 'lines' or 'off': $HPCDIST_PROGRESS, else `mode`, with auto detected."""
    mode = os.environ.get("HPCDIST_PROGRESS", "").strip() or mode
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "bar" if launched_from_terminal(stream) else "lines"
    return mode


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(seconds), 60)
    return (
        f"{minutes // 60}h{minutes % 60:02d}m{s:02d}s" if minutes >= 60 else f"{minutes}m{s:02d}s"
    )


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) or hasattr(v, "dtype") else str(v)


class Progress:
    """Counts items done; draws a bar, prints lines, or stays quiet (see the module doc)."""

    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        enabled: bool = True,
        mode: str = "auto",
        stream: TextIO | None = None,
        every_s: float = 30.0,
        unit: str = "steps",
    ):
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total, self.desc, self.n, self.unit = int(total), desc, 0, unit
        self.stream = stream if stream is not None else sys.stdout
        self.mode = choose_mode(mode, self.stream) if enabled else "off"
        self.every_s = every_s
        self._start = self._last_print = time.monotonic()
        self._postfix: dict = {}
        self._printed_n = -1
        self._bar = self._make_bar() if self.mode == "bar" else None

    def _make_bar(self):
        try:
            from tqdm import tqdm
        except ImportError:
            self.mode = "lines"
            return None
        return tqdm(total=self.total, desc=self.desc, file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix) -> None:
        """Count `n` more items; keyword values are shown beside the count, named as given."""
        self.n += n
        self._postfix.update(postfix)
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: _fmt(v) for k, v in self._postfix.items()}, refresh=False)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last_print >= self.every_s:
                self._print_line(now)

    def _print_line(self, now: float) -> None:
        elapsed = now - self._start
        head = f"{self.desc}: " if self.desc else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = ""
        if 0 < self.n < self.total:
            eta = f", ETA {_duration(elapsed * (self.total - self.n) / self.n)}"
        extra = "".join(f", {k} {_fmt(v)}" for k, v in self._postfix.items())
        line = f"{head}{self.n}/{self.total} {self.unit}{pct}, {_duration(elapsed)}{eta}{extra}"
        self.stream.write(line + "\n")
        self.stream.flush()
        self._last_print, self._printed_n = now, self.n

    def close(self) -> None:
        """Finish the bar, or print the last line if the last count was not shown."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self._printed_n != self.n:
            self._print_line(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
