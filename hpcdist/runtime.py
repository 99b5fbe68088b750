"""MPI start-up, rank facts, abort-on-error and pre-emption signals."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass

from mpi4py import MPI

from . import watcher
from .errors import HpcdistError

#: Split the ranks of one machine into pretend nodes of this many ranks, so the
#: hierarchical (between-node) code paths run on a laptop or a CI machine.
RANKS_PER_NODE_ENV = "HPCDIST_RANKS_PER_NODE"


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    node_index: int
    num_nodes: int
    host: str

    @property
    def is_root(self) -> bool:
        return self.rank == 0


class _Runtime:
    """The state behind init(): communicators and the rank facts."""

    def __init__(self, comm: MPI.Comm, ranks_per_node: int | None):
        self.comm = comm
        self.local_comm = _node_comm(comm, ranks_per_node)
        leader = self.local_comm.rank == 0
        self.leader_comm = comm.Split(0 if leader else MPI.UNDEFINED, comm.rank)
        facts = (self.leader_comm.rank, self.leader_comm.size) if leader else None
        from .guard import Guard

        guard = Guard(self.local_comm, name="start-up")
        node_index, num_nodes = guard.bcast(facts, root=0, what="the node index from its leader")
        guard.free()
        self.info = RankInfo(
            rank=comm.rank,
            size=comm.size,
            local_rank=self.local_comm.rank,
            local_size=self.local_comm.size,
            node_index=node_index,
            num_nodes=num_nodes,
            host=socket.gethostname(),
        )


def _node_comm(comm: MPI.Comm, ranks_per_node: int | None) -> MPI.Comm:
    shared = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    if not ranks_per_node:
        return shared
    if ranks_per_node < 1:
        raise ValueError(f"ranks_per_node must be >= 1, got {ranks_per_node}")
    return shared.Split(shared.rank // ranks_per_node, shared.rank)


_runtime: _Runtime | None = None


def init(
    comm: MPI.Comm | None = None,
    *,
    abort_on_error: bool = True,
    ranks_per_node: int | None = None,
) -> RankInfo:
    """Start hpcdist on `comm` (COMM_WORLD); calling it again returns the same facts.

    `ranks_per_node` (or $HPCDIST_RANKS_PER_NODE) splits each machine into
    pretend nodes of that many ranks. With `abort_on_error` an uncaught
    exception on any rank prints the rank and traceback and aborts the job.
    """
    global _runtime
    if _runtime is not None:
        return _runtime.info
    if ranks_per_node is None and os.environ.get(RANKS_PER_NODE_ENV):
        ranks_per_node = int(os.environ[RANKS_PER_NODE_ENV])
    _runtime = _Runtime(comm or MPI.COMM_WORLD, ranks_per_node)
    if abort_on_error:
        install_abort_hooks()
    if MPI.COMM_WORLD.size > 1:
        # the ranks of one host share their parent (hydra's proxy, slurmstepd, orted)
        watcher.start(MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size, token=str(os.getppid()))
    return _runtime.info


def _get() -> _Runtime:
    if _runtime is None:
        init()
    return _runtime


def rank_info() -> RankInfo:
    return _get().info


def rank() -> int:
    return _get().info.rank


def size() -> int:
    return _get().info.size


def local_rank() -> int:
    return _get().info.local_rank


def local_size() -> int:
    return _get().info.local_size


def node_index() -> int:
    return _get().info.node_index


def host() -> str:
    return _get().info.host


def world_comm() -> MPI.Comm:
    """The communicator hpcdist was started on."""
    return _get().comm


def local_comm() -> MPI.Comm:
    """The ranks of this (possibly pretend) node."""
    return _get().local_comm


def leader_comm() -> MPI.Comm:
    """Local rank 0 of every node; MPI.COMM_NULL on the other ranks."""
    return _get().leader_comm


# --- failure behaviour ------------------------------------------------------

#: Seconds a rank waits between printing why it aborts and aborting: the launcher
#: forwards the message (and the other ranks, often raising the same error, print
#: theirs) before MPI_Abort tears the job down; without it messages were lost.
ABORT_GRACE_S = 1.0
#: Set to 1 to get the traceback of an hpcdist error too (it is left out: the message says it).
TRACEBACK_ENV = "HPCDIST_TRACEBACK"
#: Exit status of a job ended by Ctrl-C outside the training loop (or by a second Ctrl-C).
INTERRUPTED_EXIT_CODE = 130
INTERRUPTED_MESSAGE = "interrupted (Ctrl-C / SIGINT)"


def abort(message: str, exitcode: int = 1, grace_s: float = ABORT_GRACE_S) -> None:
    """Print `message` tagged with this rank, give the launcher a moment, end the whole job."""
    comm = MPI.COMM_WORLD
    watcher.claim()  # this message explains the end: the watchers stay quiet
    where = f"rank {comm.rank} of {comm.size} on {socket.gethostname()}"
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # closed, or re-entered from a signal handler
            pass
    # One os.write: nothing buffered to lose, safe inside a signal handler.
    os.write(2, f"hpcdist: {where}: {message.rstrip()}\nhpcdist: aborting the job\n".encode())
    if grace_s:
        time.sleep(grace_s)
    if comm.size > 1:
        comm.Abort(exitcode)
    os._exit(exitcode)


def _excepthook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt) and MPI.COMM_WORLD.size > 1:
        # Left to itself Python would go on to MPI_Finalize and wait there for ranks
        # that are still in a collective (Ctrl-C hung jobs that way, or they crashed).
        abort(INTERRUPTED_MESSAGE, exitcode=INTERRUPTED_EXIT_CODE, grace_s=0.5)
    if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
        sys.__excepthook__(exc_type, exc, tb)
        return
    if isinstance(exc, HpcdistError) and os.environ.get(TRACEBACK_ENV) != "1":
        abort(f"{exc_type.__name__}: {exc}", exitcode=1)  # a deliberate error says it all
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    abort(f"uncaught exception\n{text}", exitcode=1)


def _thread_excepthook(args) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    abort(f"uncaught exception in thread {name!r}\n{text}")


def install_abort_hooks() -> None:
    """Make an uncaught exception in any thread abort the whole MPI job."""
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


# --- pre-emption signals ----------------------------------------------------

PREEMPTION_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")
#: A SIGINT this many seconds after the first is a second Ctrl-C (sooner: mpiexec's copy).
SECOND_SIGINT_S = 1.0


class Preemption:
    """Records SIGTERM/SIGUSR1/SIGINT so the training loop can checkpoint and exit.

    A signal handler cannot run MPI collectives; it only sets a flag. The
    loop polls `requested` at step boundaries (and agrees across ranks).
    Ctrl-C in a terminal sends SIGINT to mpiexec and every rank: the first
    one is a pre-emption like SIGTERM (rank 0 says so); a second SIGINT on a
    rank aborts the job at once, without a checkpoint (exit status 130). mpiexec
    forwards the terminal's SIGINT too, so a rank can get two at once: only one
    that comes SECOND_SIGINT_S after the first counts as the second Ctrl-C.
    """

    def __init__(self):
        self._event = threading.Event()
        self.signal_name: str | None = None
        self._previous: dict = {}
        self._first_sigint: float | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def _handler(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and self._first_sigint is not None:
            if time.monotonic() - self._first_sigint >= SECOND_SIGINT_S:
                abort(f"{INTERRUPTED_MESSAGE} again: no checkpoint", INTERRUPTED_EXIT_CODE, 0.5)
            return
        if name == "SIGINT":
            self._first_sigint = time.monotonic()
        if name == "SIGINT" and MPI.COMM_WORLD.rank == 0:
            # os.write, not print: the handler may interrupt a print of the main thread.
            os.write(
                2,
                b"hpcdist: interrupted (Ctrl-C): stopping at the next step check with a "
                b"checkpoint; Ctrl-C again to abort at once without one\n",
            )
        self.signal_name = self.signal_name or name
        self._event.set()

    def install(self, names=PREEMPTION_SIGNALS) -> Preemption:
        """Route `names` to this object (main thread only)."""
        for name in names:
            signum = getattr(signal, name)
            self._previous.setdefault(name, signal.getsignal(signum))
            signal.signal(signum, self._handler)
        return self

    def uninstall(self, names=PREEMPTION_SIGNALS) -> None:
        """Put back the handlers found at install() (Python's KeyboardInterrupt for SIGINT)."""
        for name in names:
            previous = self._previous.pop(name, signal.SIG_DFL)
            signal.signal(getattr(signal, name), signal.SIG_DFL if previous is None else previous)


def catch_preemption(names=PREEMPTION_SIGNALS) -> Preemption:
    """Install handlers for SLURM's pre-emption signals and return the flag."""
    return Preemption().install(names)
