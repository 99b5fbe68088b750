"""Reader processes: h5py holds the GIL while it reads, so HDF5 reads run in child processes.

Each child owns a few block slots of shared memory; the parent asks it to
read a row range of a file into a slot and waits for the reply. Requests are
answered in order, and carry a token so replies of an abandoned epoch are
dropped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing import shared_memory
from multiprocessing.connection import Connection

import numpy as np

from ..errors import DataError, OutOfRangeError
from .producer import EpochWork
from .ringread import FedRing, RingPath

SLOTS = 2


def _views(shm, slots: int, rows: int, shape, xdtype, ydtype):
    xbytes = slots * rows * int(np.prod(shape)) * np.dtype(xdtype).itemsize
    x = np.ndarray((slots, rows, *shape), dtype=xdtype, buffer=shm.buf)
    y = np.ndarray((slots, rows), dtype=ydtype, buffer=shm.buf, offset=xbytes)
    return x, y


def _nbytes(rows: int, shape, xdtype, ydtype) -> int:
    per = int(np.prod(shape)) * np.dtype(xdtype).itemsize + np.dtype(ydtype).itemsize
    return max(1, SLOTS * rows * per)


def _worker(conn) -> None:
    from . import sources

    source, shm_name, rows, shape, xdtype, ydtype, rank = conn.recv()
    sources.RANK = rank  # never import MPI in a child of an MPI rank
    shm = shared_memory.SharedMemory(name=shm_name)
    from multiprocessing import resource_tracker

    resource_tracker.unregister(shm._name, "shared_memory")  # the parent owns and unlinks it
    x, y = _views(shm, SLOTS, rows, shape, xdtype, ydtype)
    orphaned = False
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                break
            token, slot, f, a, b = msg
            try:
                source.read_into(f, a, b, x[slot, : b - a], y[slot, : b - a])
                conn.send((token, slot, None))
            except Exception as ex:  # noqa: BLE001 - sent to the parent, raised there
                conn.send((token, slot, f"{type(ex).__name__}: {ex}"))
    except (EOFError, OSError):  # the parent went without a goodbye (killed, an MPI abort)
        orphaned = True
    finally:
        del x, y
        shm.close()
        source.close()
        if orphaned:  # nobody else will unlink the segment now
            resource_tracker.register(shm._name, "shared_memory")
            shm.unlink()


_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "HYDRA_", "MPIR_", "OMPI_", "MPICH_", "I_MPI_")


def _child_env() -> dict:
    """This environment without the MPI launcher's variables, with hpcdist importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCHER_PREFIXES)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


class _Duplex:
    """A reading and a writing Connection used as one."""

    def __init__(self, rd: Connection, wr: Connection):
        self.rd, self.wr = rd, wr
        self.poll, self.recv, self.send = rd.poll, rd.recv, wr.send

    def close(self) -> None:
        self.rd.close()
        self.wr.close()


class ReaderProcess:
    """One child process reading blocks of `rows` records into shared memory."""

    def __init__(self, source, rows: int, rank: int):
        shape, xd, yd = tuple(source.feature_shape), source.feature_dtype, source.label_dtype
        self.shm = shared_memory.SharedMemory(create=True, size=_nbytes(rows, shape, xd, yd))
        self.x, self.y = _views(self.shm, SLOTS, rows, shape, xd, yd)
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(down_r), str(up_w)],
            pass_fds=(down_r, up_w),
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            # Out of the rank's process group: when the launcher kills the group after
            # an abort, the child lives on to see the pipe close and unlink the memory.
            start_new_session=True,
        )
        os.close(down_r)
        os.close(up_w)
        self.conn = _Duplex(Connection(up_r, writable=False), Connection(down_w, readable=False))
        self.conn.send((source, self.shm.name, rows, shape, xd, yd, rank))

    def request(self, token, slot: int, f: int, a: int, b: int) -> None:
        self.conn.send((token, slot, f, a, b))

    def reply(self, token, should_stop, timeout: float = 300.0) -> int:
        """Wait for the reply to `token`'s oldest request; returns its slot."""
        deadline = time.monotonic() + timeout
        while True:
            while not self.conn.poll(0.1):
                if should_stop():
                    raise DataError("pipeline stopped")
                if time.monotonic() > deadline:
                    raise DataError(
                        f"reader process {self.proc.pid} sent no block for {timeout:g} s"
                    )
                if self.proc.poll() is not None:
                    raise DataError(
                        f"reader process {self.proc.pid} died (exit code {self.proc.returncode})"
                    )
            got, slot, error = self.conn.recv()
            if got != token:
                continue  # left over from an abandoned epoch
            if error is not None:
                raise DataError(error)
            return slot

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()
        del self.x, self.y
        self.shm.close()
        try:
            self.shm.unlink()
        except FileNotFoundError:  # the child saw the pipe close first and unlinked it
            pass


class ProcessFeeder:
    """Feeds the shuffle ring from reader processes, in plan order (one thread per child).

    A child reads a block into its shared-memory slot; the thread reserves
    the block's ring rows (in plan order) and copies it there.
    """

    def __init__(self, *, procs: list, plan, ring, work: EpochWork, token: int):
        self.procs, self.plan, self.ring, self.token = procs, plan, ring, token
        self.a, self.b, self.stats, self.coord = work.starts, work.stops, work.stats, work.coord
        self.timeout = work.stall_timeout
        self.lock = threading.Lock()

    def functions(self) -> list:
        return [self._make(t) for t in range(len(self.procs))]

    def _make(self, t: int):
        mine = list(range(t, len(self.a), len(self.procs)))
        proc, state = self.procs[t], {"sent": 0, "done": 0}

        def send_ahead():
            while state["sent"] < len(mine) and state["sent"] - state["done"] < SLOTS:
                i = mine[state["sent"]]
                f, row = self.plan.locate(np.array([self.a[i]]))
                n = int(self.b[i] - self.a[i])
                proc.request(
                    self.token, state["sent"] % SLOTS, int(f[0]), int(row[0]), int(row[0]) + n
                )
                state["sent"] += 1

        def fn():
            if state["done"] == len(mine):
                raise OutOfRangeError("no more ranges for this reader")
            send_ahead()
            slot = proc.reply(self.token, self.coord.should_stop, self.timeout)
            i = mine[state["done"]]
            self._enqueue(i, proc.x[slot], proc.y[slot])
            state["done"] += 1
            send_ahead()

        return fn

    def _enqueue(self, i: int, x, y) -> None:
        a, b = int(self.a[i]), int(self.b[i])
        lo = 0
        for s0, s1 in self.ring.reserve(i, b - a):
            self.ring.x[s0:s1], self.ring.y[s0:s1] = x[lo : lo + s1 - s0], y[lo : lo + s1 - s0]
            lo += s1 - s0
        self.ring.commit(i, a)
        with self.lock:
            self.stats.records_read += b - a


def _close_all(procs) -> None:
    for p in procs:
        p.close()


class ProcessPath(RingPath):
    """The shuffle ring fed by `num_threads` reader processes (started once, kept until close)."""

    def __init__(self, source, plan, rank, shuffle_rng):
        super().__init__(source, plan, rank, shuffle_rng)
        self.procs: list[ReaderProcess] = []
        self.epochs_started = 0  # the token of each epoch's requests
        self.finalizer = None

    def producer(self, work: EpochWork) -> FedRing:
        ring = self.new_ring(work)
        if not self.procs:
            block = self.plan.block_size
            self.procs = [
                ReaderProcess(self.source, block, self.rank) for _ in range(work.num_threads)
            ]
            self.finalizer = weakref.finalize(self, _close_all, self.procs)
        self.epochs_started += 1
        feeder = ProcessFeeder(
            procs=self.procs, plan=self.plan, ring=ring, work=work, token=self.epochs_started
        )
        return FedRing(ring, feeder)

    def close(self) -> None:
        """Stop the reader processes."""
        if self.finalizer is not None:
            self.finalizer()
        self.procs = []


def child_main(argv) -> None:
    """Entry point of a reader process: argv holds the two pipe descriptors."""
    rfd, wfd = int(argv[0]), int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the rank decides
    _worker(_Duplex(Connection(rfd, writable=False), Connection(wfd, readable=False)))


_CHILD = "import sys; from hpcdist.data.procread import child_main; child_main(sys.argv[1:])"
