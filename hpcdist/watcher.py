"""A rank killed without a word (SIGKILL, the out-of-memory killer, a crash) is named.

    watcher.start(rank, size, token)   # in runtime.init, on every rank of a multi-rank job
    watcher.claim()                    # in runtime.abort: this rank explains the end itself

Nothing runs in a process killed with SIGKILL, and the launcher's own report
names no rank (MPICH's hydra printed "BAD TERMINATION ... PID p" with the pid
of local rank 0, whichever rank was killed). So each rank starts one small
process that holds the read end of a pipe from it and waits. A rank that ends
through Python says goodbye first (atexit); one that aborts through
runtime.abort says it explains the end itself. A pipe that closes without
either means the rank died: its watcher prints one line naming the rank, its
pid and host.

The launcher then kills the other ranks, whose watchers see their pipes close
as well. A watcher whose rank died while every other rank of the host (the
children of the same launcher process, the token) was still alive knows its
rank went first. To look before the launcher can act, the watcher also waits
on a process-shared robust mutex its rank holds: the kernel frees it early in
the rank's exit, before it closes the rank's files (which is how the launcher
learns of the death). The pipe alone decides whether the rank is gone, so a
mutex that is never freed cannot hang the watcher. Only one watcher on a host
speaks: it claims an abstract Unix socket named after the token, and the later
ones find it taken. The socket vanishes with its holder, so nothing is left
behind. On several hosts, each host's first speaks; the time in the line
tells which came first.

This file runs as a script (`python -I watcher.py RANK SIZE PID TOKEN [LOCK_FD]`),
importing nothing of hpcdist or MPI: the child must not start MPI itself.
"""

from __future__ import annotations

import atexit
import ctypes
import mmap
import os
import socket
import subprocess
import sys
import threading
import time

#: Set to 0 to start no watcher.
ENV = "HPCDIST_WATCHER"
#: What a rank writes into the pipe: it ends normally, or it explains the end itself.
BYE, CLAIM = b"b", b"c"
#: Seconds a watcher that spoke holds the claim, so that the watchers of the ranks the
#: launcher kills next find it taken.
HOLD_S = 3.0

_pipe: int | None = None
_lock: mmap.mmap | None = None  # the page of the robust mutex the rank holds while it lives


def start(rank: int, size: int, token: str) -> None:
    """Start this rank's watcher (once; not where $HPCDIST_WATCHER is 0)."""
    global _pipe, _lock
    if _pipe is not None or os.environ.get(ENV, "1") == "0":
        return
    read_end, _pipe = os.pipe()
    held = _held_lock()
    fds, _lock = ((held[0],), held[1]) if held else ((), None)
    try:
        subprocess.Popen(
            [sys.executable, "-I", __file__, str(rank), str(size), str(os.getpid()), token]
            + [str(fd) for fd in fds],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal's group is the rank's to handle
            pass_fds=fds,
        )
    except OSError:  # no process to spare (limits): the job runs unwatched
        os.close(_pipe)
        _pipe = _lock = None
    os.close(read_end)
    if fds:
        os.close(fds[0])
    if _pipe is None:
        return
    atexit.register(_say, BYE)
    os.register_at_fork(after_in_child=_forget)  # a forked child must not keep the pipe open


def _forget() -> None:
    global _pipe, _lock
    if _pipe is not None:
        os.close(_pipe)
    _pipe = _lock = None


def _held_lock():
    """(fd, mapping) of a process-shared robust mutex this thread holds, or None where the
    C library offers none. The kernel marks it free early in the process's exit, before it
    closes files (when the launcher learns of the death), so the watcher wakes first."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.memfd_create("hpcdist-watcher")
        os.ftruncate(fd, mmap.PAGESIZE)
        area = mmap.mmap(fd, mmap.PAGESIZE)
        mutex, attr = _address(area), _address(area, 64)
        ok = (
            libc.pthread_mutexattr_init(attr) == 0
            and libc.pthread_mutexattr_setpshared(attr, 1) == 0  # PTHREAD_PROCESS_SHARED
            and libc.pthread_mutexattr_setrobust(attr, 1) == 0  # PTHREAD_MUTEX_ROBUST
            and libc.pthread_mutex_init(mutex, attr) == 0
            and libc.pthread_mutex_lock(mutex) == 0
        )
    except (OSError, AttributeError, ValueError):
        return None
    if not ok:
        os.close(fd)
        return None
    return fd, area


def _watch_lock(fd: str, parent: int, siblings: list[int], seen: list) -> None:
    """(Thread) Wait for the rank's robust mutex to be free, its thread ended; append the
    time and the siblings alive then to `seen`."""
    try:
        area = mmap.mmap(int(fd), mmap.PAGESIZE)
        ctypes.CDLL(None).pthread_mutex_lock(_address(area))
    except (OSError, ValueError):
        return
    seen.append((time.monotonic(), [s for s in siblings if _parent_of(s) == parent]))


def claim() -> None:
    """This rank explains why the job ends (it is aborting): its watcher stays quiet and
    keeps the others on this host quiet. Safe inside a signal handler."""
    _say(CLAIM)


def _say(word: bytes) -> None:
    global _pipe, _lock
    if _pipe is None:
        return
    try:
        os.write(_pipe, word)
        os.close(_pipe)
    except OSError:
        pass
    _pipe = None
    if _lock is not None:  # before the interpreter unmaps it: the kernel could not free it then
        ctypes.CDLL(None).pthread_mutex_unlock(_address(_lock))
        _lock = None


def _address(area: mmap.mmap, offset: int = 0) -> ctypes.c_void_p:
    return ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(area, offset)))


def _claim(name: str) -> socket.socket | None:
    """The claim `name` on this host (held while the returned socket lives), or None if
    another process holds it."""
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(f"\0hpcdist-{name}")
    except OSError:
        sock.close()
        return None
    return sock


def _siblings(parent: int, rank_pid: int) -> list[int]:
    """The other processes the launcher started on this host (its children but this rank)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != rank_pid and _parent_of(int(entry)) == parent:
            found.append(int(entry))
    return found


#: /proc/PID/stat's flags bit of a process in its exit (include/linux/sched.h PF_EXITING).
PF_EXITING = 0x4


def _parent_of(pid: int) -> int | None:
    """The parent of a live process; None for one gone, a zombie or one in its exit."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # from field 3, state
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X") or int(fields[6]) & PF_EXITING:
        return None
    return int(fields[1])


def main(rank: str, size: str, pid: str, token: str, lock_fd: str | None = None) -> int:
    parent = int(token)
    siblings = _siblings(parent, int(pid))
    seen: list = []  # (when, siblings alive) as the mutex came free
    if lock_fd is not None:  # a thread: the pipe decides, should the mutex never come free
        args = (lock_fd, parent, siblings, seen)
        threading.Thread(target=_watch_lock, args=args, daemon=True).start()
    said = b""
    while chunk := os.read(0, 16):  # until the rank's end of the pipe closes
        said += chunk
    if BYE in said:
        return 0
    now = time.time()
    if seen and time.monotonic() - seen[0][0] < 1.0:
        alive = seen[0][1]
    else:  # no mutex, or its thread ended long before the rank
        alive = [s for s in siblings if _parent_of(s) == parent]
    # The launcher kills the other ranks only once one has died, so every sibling still
    # alive now means this rank went first. Otherwise this watcher woke too late to tell (or
    # its rank was one the launcher killed): it speaks only if no other watcher has after a
    # moment, and says it cannot be sure.
    first = bool(siblings) and len(alive) == len(siblings)
    if CLAIM in said or first:
        held = _claim(f"ended-{token}")
    else:  # the first of the unsure to wake is likeliest the first to die; it waits for a sure one
        noticed = _claim(f"noticed-{token}")
        time.sleep(0.5)
        held = _claim(f"ended-{token}") if noticed else None
    if held is None or CLAIM in said:
        if held is not None:
            time.sleep(HOLD_S)
        return 0
    when = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    line = (
        f"hpcdist: rank {rank} of {size} (pid {pid} on {socket.gethostname()}) ended at {when}"
        " without a word from hpcdist: killed (SIGKILL, the out-of-memory killer) or crashed"
    )
    if not first:
        line += " (or the launcher ended it after another rank on this host: woke too late to tell)"
    os.write(2, f"{line}\n".encode())
    time.sleep(HOLD_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
