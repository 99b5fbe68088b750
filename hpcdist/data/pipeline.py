"""InputPipeline: plan -> readers -> shuffle ring -> equal batches per rank."""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass

import numpy as np

from ..errors import CancelledError, DataError
from .direct import BatchPool, DirectBatches
from .plan import EpochPlan, id_runs, skip_records
from .procread import ProcessFeeder, ReaderProcess
from .queues import set_rng_state_words
from .ring import RingFeeder, ShuffleRing
from .runners import Coordinator, QueueRunner
from .shufflesim import ShuffleSim, SimAhead


@dataclass
class PipelineStats:
    """This rank's counts for the current epoch; `reduced()` sums them over ranks."""

    epoch: int = 0
    wait_s: float = 0.0
    records_read: int = 0
    batches: int = 0
    bad_records: int = 0
    comm: object = None

    def reduced(self) -> dict:
        """Sums over the pipeline's ranks (a collective: call it on every rank)."""
        mine = np.array([self.wait_s, self.records_read, self.batches, self.bad_records], "f8")
        total = np.zeros_like(mine)
        self.comm.Allreduce(mine, total)
        keys = ("wait_s", "records_read", "batches", "bad_records")
        out = {k: (float(v) if k == "wait_s" else int(v)) for k, v in zip(keys, total, strict=True)}
        return {"epoch": self.epoch, **out}


def _close_all(procs) -> None:
    for p in procs:
        p.close()


class InputPipeline:
    """Sharded, shuffled, resumable batches with the same step count on every rank.

    Batches are a deterministic function of (seed, epoch, rank, world size,
    step), whatever the thread timing: the plan fixes each rank's record
    order, readers publish blocks in that order, and the shuffle ring always
    picks from the oldest shuffle_buffer + batch_size records.

    `stall_timeout` (seconds; default $HPCDIST_STALL_TIMEOUT or 300): a batch
    that does not come within it raises DataError naming what was awaited,
    instead of hanging; so does a reader thread that will not stop.
    """

    def __init__(
        self,
        source,
        batch_size: int,
        seed: int = 0,
        comm=None,
        shuffle_buffer: int = 10000,
        remainder: str = "drop",
        num_threads: int = 2,
        block_size: int = 1024,
        prefetch: int | None = None,
        readers: str = "auto",
        stall_timeout: float | None = None,
    ):
        if comm is None:
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
        if shuffle_buffer < 0 or num_threads < 1:
            raise ValueError(
                f"shuffle_buffer >= 0 and num_threads >= 1, got {shuffle_buffer} and {num_threads}"
            )
        self.source, self.comm, self.rank = source, comm, comm.rank
        self.batch_size, self.seed, self.shuffle_buffer = batch_size, seed, shuffle_buffer
        self.num_threads, self.remainder = num_threads, remainder
        self.prefetch = max(block_size, 2 * block_size if prefetch is None else int(prefetch))
        if readers not in ("auto", "threads", "processes"):
            raise ValueError(f"readers must be 'auto', 'threads' or 'processes', got {readers!r}")
        # auto = threads: on the shared 2-core dev VM reader processes measured slower
        # (docs/benchmarks.md); ask for "processes" where cores are free.
        self.use_processes = readers == "processes"
        self.block_size = block_size
        if stall_timeout is None:
            stall_timeout = float(os.environ.get("HPCDIST_STALL_TIMEOUT", 300))
        self.stall_timeout = float(stall_timeout)
        self._procs: list = []
        self._stragglers: list = []
        self._finalizer = None
        self._epochs_started = 0
        self._last_ring = None
        self._layouts: dict = {}
        self._pool = BatchPool()
        self._ahead = SimAhead(self)
        self.plan = EpochPlan(source.counts, seed, comm.size, batch_size, remainder, block_size)
        self.stats = PipelineStats(comm=comm)
        self._live = {"epoch": 0, "step": 0, "cursor": 0, "queue": None}
        self._resume: dict | None = None
        self._active = None

    @property
    def steps_per_epoch(self) -> int:
        """Batches every rank gets per epoch (the same on all ranks)."""
        return self.plan.steps

    def epoch(self, epoch: int):
        """Iterate this rank's batches of `epoch`: (x, y), or (x, y, mask) with remainder='pad'."""
        if self._active is not None:
            self._active.close()
        self._active = self._batches(int(epoch))
        return self._active

    # --- the epoch loop -------------------------------------------------
    def _batches(self, epoch: int):
        step, cursor, ids0, rng0 = self._take_resume(epoch)
        a, b = self.plan.rank_ranges(epoch, self.rank)
        n_rank = int((b - a).sum())
        a, b = skip_records(a, b, cursor + len(ids0))
        self._reap()
        self.stats = PipelineStats(epoch=epoch, comm=self.comm)
        coord = Coordinator()
        ring = self._direct(epoch, a, b, ids0, rng0 if len(ids0) or cursor else None)
        if ring is not None:
            functions = ring.functions(self.num_threads, self.stats)
        else:
            ring = self._new_ring(epoch)
            if len(ids0) or cursor:
                ring.restore(*self._read_ids(ids0), ids0, rng0)
            functions = self._feeder(ring, a, b, coord).functions()
        if isinstance(ring, DirectBatches):
            ring.ahead = self._ahead.make(epoch + 1)
        threads = QueueRunner(ring, functions).create_threads(coord)
        self._live = {"epoch": epoch, "step": step, "cursor": cursor, "queue": ring}
        try:
            for s in range(step, self.steps_per_epoch):
                want = min(self.batch_size, max(0, n_rank - cursor))
                x, y = self._dequeue(ring, coord, want)
                cursor += want
                self._live.update(step=s + 1, cursor=cursor)
                self.stats.batches += 1
                yield self._finish(x, y, want)
            self._live = {"epoch": epoch + 1, "step": 0, "cursor": 0, "queue": None}
        finally:
            coord.request_stop()
            ring.close(cancel_pending_enqueues=True)
            deadline = time.monotonic() + self.stall_timeout
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            self._stragglers = [t for t in threads if t.is_alive()]

    def _reap(self) -> None:
        """Never start an epoch while a reader of the last one runs (it would share memory)."""
        for t in self._stragglers:
            t.join(self.stall_timeout)
        alive = [t.name for t in self._stragglers if t.is_alive()]
        if alive:
            raise DataError(
                f"rank {self.rank}: reader threads {alive} did not stop within "
                f"{self.stall_timeout:g} s of the end of the last epoch"
            )
        self._stragglers = []

    def _feeder(self, ring, a, b, coord):
        if not self.use_processes:
            return RingFeeder(self.source, self.plan, ring, a, b, self.num_threads, self.stats)
        if not self._procs:
            self._procs = [
                ReaderProcess(self.source, self.block_size, self.rank)
                for _ in range(self.num_threads)
            ]
            self._finalizer = weakref.finalize(self, _close_all, self._procs)
        self._epochs_started += 1
        return ProcessFeeder(
            self._procs,
            self.plan,
            ring,
            a,
            b,
            self.stats,
            coord,
            self._epochs_started,
            self.stall_timeout,
        )

    def close(self) -> None:
        """Stop the current epoch's threads and the reader processes."""
        if self._active is not None:
            self._active.close()
        if self._finalizer is not None:
            self._finalizer()
        self._procs = []

    def _direct(self, epoch, a, b, ids0, rng0) -> DirectBatches | None:
        """One copy per row where every file of the epoch can be read by os.preadv."""
        blocks = id_runs(ids0, self.plan) + (len(ids0),)
        starts = np.concatenate([blocks[0], a])
        lens = np.concatenate([blocks[1], b - a])
        if self.use_processes or not hasattr(self.source, "raw_layout"):
            return None
        files = np.unique(self.plan.locate(starts)[0]).tolist()
        for f in files:
            if f not in self._layouts:
                self._layouts[f] = self.source.raw_layout(f)
            if self._layouts[f] is None:
                return None
        sim = self._ahead.take(epoch) if rng0 is None else None
        if sim is None:
            sim = ShuffleSim(
                int(lens.sum()), self.shuffle_buffer, self.batch_size, self._rng(epoch)
            )
            if rng0 is not None:
                set_rng_state_words(sim.rng, rng0)
                sim.words0 = np.asarray(rng0, np.uint64).copy()
        return DirectBatches(
            self.source,
            self.plan,
            self._layouts,
            (starts, lens, len(ids0)),
            self.shuffle_buffer,
            self.batch_size,
            self.shuffle_buffer + self.batch_size + self.prefetch,
            sim,
            self.stall_timeout,
            f"direct[rank {self.rank}]",
            self._pool,
        )

    def _rng(self, epoch: int) -> np.random.Generator:
        seed = np.random.SeedSequence([self.seed, epoch, self.rank, 0x5B0F])
        return np.random.Generator(np.random.PCG64(seed))

    def _new_ring(self, epoch: int) -> ShuffleRing:
        src = self.source
        ring = ShuffleRing(
            self.shuffle_buffer,
            self.batch_size,
            self.shuffle_buffer + self.batch_size + self.prefetch,
            tuple(src.feature_shape),
            (np.dtype(src.feature_dtype), np.dtype(src.label_dtype)),
            np.random.SeedSequence([self.seed, epoch, self.rank, 0x5B0F]),  # as _rng
            self.stall_timeout,
            f"shuffle[rank {self.rank}]",
            old=self._last_ring,  # reuse its memory: fresh pages cost page faults
        )
        self._last_ring = ring
        return ring

    def _dequeue(self, ring, coord, want: int):
        start = time.perf_counter()
        try:
            if want == 0:
                return None, None
            try:
                out = ring.take(self.batch_size)
            except CancelledError:
                out = None
            if out is None or len(out[0]) != want:
                coord.raise_requested_exception()
                raise DataError(f"rank {self.rank}: the readers ended {want} records short")
            return out
        finally:
            self.stats.wait_s += time.perf_counter() - start

    def _finish(self, x, y, real: int):
        if self.remainder == "drop":
            return x, y
        src, n = self.source, self.batch_size
        if real < n:
            px = np.zeros((n, *src.feature_shape), dtype=src.feature_dtype)
            py = np.zeros(n, dtype=src.label_dtype)
            if real:
                px[:real], py[:real] = x, y
            x, y = px, py
        return x, y, np.arange(n) < real

    def _read_ids(self, ids: np.ndarray):
        """Features and labels of global ids, read in contiguous runs."""
        if len(ids) == 0:
            src = self.source
            return np.empty((0, *src.feature_shape), src.feature_dtype), np.empty(
                0, src.label_dtype
            )
        order = np.argsort(ids, kind="stable")
        sids = ids[order]
        files, rows = self.plan.locate(sids)
        cut = np.flatnonzero((np.diff(sids) != 1) | (np.diff(files) != 0)) + 1
        xs, ys = [], []
        for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(sids)], strict=True):
            x, y = self.source.read(int(files[lo]), int(rows[lo]), int(rows[lo]) + hi - lo)
            xs.append(x)
            ys.append(y)
        x, y = np.empty_like(np.concatenate(xs)), np.empty_like(np.concatenate(ys))
        x[order], y[order] = np.concatenate(xs), np.concatenate(ys)
        return x, y

    # --- resume ---------------------------------------------------------
    def state_dict(self) -> dict:
        """Where this rank stands: small ints and arrays, storable in HDF5."""
        live, ring = self._live, self._live["queue"]
        if ring is not None:
            ids, rng = ring.snapshot()
        else:
            ids, rng = np.zeros(0, np.int64), np.zeros(6, np.uint64)
        return {
            "epoch": int(live["epoch"]),
            "step": int(live["step"]),
            "cursor": int(live["cursor"]),
            "buffer_ids": np.asarray(ids, np.int64),
            "rng": rng,
            "seed": int(self.seed),
            "rank": int(self.rank),
            "world_size": int(self.comm.size),
            "batch_size": int(self.batch_size),
            "shuffle_buffer": int(self.shuffle_buffer),
        }

    def load_state_dict(self, state: dict) -> None:
        """Make the next epoch(state['epoch']) continue exactly where `state` was taken."""
        mine = {
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.comm.size,
            "batch_size": self.batch_size,
            "shuffle_buffer": self.shuffle_buffer,
        }
        for key, value in mine.items():
            if int(state[key]) != value:
                raise ValueError(
                    f"pipeline state has {key}={int(state[key])}, this pipeline has {key}={value}"
                )
        self._resume = {k: state[k] for k in ("epoch", "step", "cursor", "buffer_ids", "rng")}
        self._live = {
            "epoch": int(state["epoch"]),
            "step": int(state["step"]),
            "cursor": int(state["cursor"]),
            "queue": None,
        }

    def _take_resume(self, epoch: int):
        r, self._resume = self._resume, None
        if r is None or int(r["epoch"]) != epoch:
            return 0, 0, np.zeros(0, np.int64), None
        ids = np.asarray(r["buffer_ids"], dtype=np.int64)
        return int(r["step"]), int(r["cursor"]), ids, np.asarray(r["rng"], np.uint64)
