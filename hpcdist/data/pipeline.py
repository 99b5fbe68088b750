"""InputPipeline: plan -> a read path's producer -> equal, shuffled batches per rank."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ..errors import CancelledError, DataError
from .plan import EpochPlan, skip_records
from .producer import READ_PATHS, EpochWork, Producer, ReadPath, read_path
from .runners import Coordinator, QueueRunner
from .shuffle import epoch_rng

#: What `readers=` accepts: a read path's name, or "auto" (and "threads", its older name).
READERS = ("auto", "threads", *READ_PATHS)


@dataclass
class PipelineStats:
    """This rank's counts for the current epoch; `reduced(guard)` sums them over ranks."""

    epoch: int = 0
    wait_s: float = 0.0
    records_read: int = 0
    batches: int = 0
    bad_records: int = 0

    def reduced(self, guard) -> dict:
        """Sums over the ranks of `guard` (an hpcdist.guard.Guard; collective: every rank)."""
        mine = np.array([self.wait_s, self.records_read, self.batches, self.bad_records], "f8")
        total = guard.allreduce(mine, op="sum", what=f"input pipeline counts of epoch {self.epoch}")
        keys = ("wait_s", "records_read", "batches", "bad_records")
        out = {k: (float(v) if k == "wait_s" else int(v)) for k, v in zip(keys, total, strict=True)}
        return {"epoch": self.epoch, **out}


class InputPipeline:
    """Sharded, shuffled, resumable batches with the same step count on every rank.

    Batches are a deterministic function of (seed, epoch, rank, world size,
    step), whatever the thread timing: the plan fixes each rank's record
    order and every read path applies the pick-from-oldest shuffle
    (`shuffle.PickFromOldest`) to that order.

    `readers`: "direct" (one copy per row by os.preadv; unfiltered HDF5),
    "ring" (reader threads into a shuffle ring; any source), "processes"
    (reader processes into the ring), or "auto" (default; "threads" is its
    older name): direct where every file of the epoch allows it, else ring.

    `stall_timeout` (seconds; default $HPCDIST_STALL_TIMEOUT or 300): a batch
    that does not come within it raises DataError naming what was awaited,
    instead of hanging; so does a reader thread that will not stop.
    """

    def __init__(
        self,
        source,
        batch_size: int,
        *,
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
        if readers not in READERS:
            raise ValueError(f"readers must be one of {READERS}, got {readers!r}")
        self.source, self.comm, self.rank = source, comm, comm.rank
        self.batch_size, self.seed, self.shuffle_buffer = batch_size, seed, shuffle_buffer
        self.num_threads, self.remainder, self.block_size = num_threads, remainder, block_size
        self.prefetch = max(block_size, 2 * block_size if prefetch is None else int(prefetch))
        self.readers = "auto" if readers == "threads" else readers
        if stall_timeout is None:
            stall_timeout = float(os.environ.get("HPCDIST_STALL_TIMEOUT", 300))
        self.stall_timeout = float(stall_timeout)
        self.plan = EpochPlan(
            source.counts, seed, comm.size, batch_size, remainder=remainder, block_size=block_size
        )
        self.stats = PipelineStats()
        self.read_path: str | None = None  # the read path of the current (or last) epoch
        self._paths: dict[str, ReadPath] = {}
        self._stragglers: list = []
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

    def nonfinite_records(self, epoch: int, limit: int = 5) -> list[tuple[str, int]]:
        """(file, record) of up to `limit` of this rank's records of `epoch` whose features
        hold NaN or inf: a scan of its share of the files, to name bad input after the fact
        (the shuffle does not keep where a batch's rows came from)."""
        a, b = self.plan.rank_ranges(int(epoch), self.rank)  # each range in one file
        files, rows = self.plan.locate(a)
        found: list[tuple[str, int]] = []
        for f, row, n in zip(files.tolist(), rows.tolist(), (b - a).tolist(), strict=True):
            x, _ = self.source.read(f, row, row + n)
            bad = np.flatnonzero(~np.isfinite(np.asarray(x).reshape(n, -1)).all(axis=1))
            found += [(self.source.paths[f], row + i) for i in bad.tolist()]
            if len(found) >= limit:
                break
        return sorted(found[:limit])

    def close(self) -> None:
        """Stop the current epoch's threads and whatever the read paths keep (processes)."""
        if self._active is not None:
            self._active.close()
        for path in self._paths.values():
            path.close()
        self._paths = {}

    # --- the epoch loop -------------------------------------------------
    def _batches(self, epoch: int):
        step, cursor, ids0, rng0 = self._take_resume(epoch)
        a, b = self.plan.rank_ranges(epoch, self.rank)
        n_rank = int((b - a).sum())
        a, b = skip_records(a, b, cursor + len(ids0))
        self._reap()
        self.stats = PipelineStats(epoch=epoch)
        coord = Coordinator()
        producer = self._producer(
            EpochWork(
                epoch=epoch,
                rank=self.rank,
                starts=a,
                stops=b,
                restored=ids0,
                rng_words=rng0 if len(ids0) or cursor else None,
                window=self.shuffle_buffer,
                batch=self.batch_size,
                budget=self.shuffle_buffer + self.batch_size + self.prefetch,
                num_threads=self.num_threads,
                stall_timeout=self.stall_timeout,
                stats=self.stats,
                coord=coord,
            )
        )
        threads = QueueRunner(producer, producer.functions()).create_threads(coord)
        self._live = {"epoch": epoch, "step": step, "cursor": cursor, "queue": producer}
        try:
            for s in range(step, self.steps_per_epoch):
                want = min(self.batch_size, max(0, n_rank - cursor))
                x, y = self._dequeue(producer, coord, want)
                cursor += want
                self._live.update(step=s + 1, cursor=cursor)
                self.stats.batches += 1
                yield self._finish(x, y, want)
            self._live = {"epoch": epoch + 1, "step": 0, "cursor": 0, "queue": None}
        finally:
            self._stop(producer, coord, threads)

    def _producer(self, work: EpochWork) -> Producer:
        """This epoch's producer from the first read path (of those `readers` allows) that can."""
        names = ("direct", "ring") if self.readers == "auto" else (self.readers,)
        for name in names:
            if name not in self._paths:
                self._paths[name] = read_path(
                    name, self.source, self.plan, self.rank, self._shuffle_rng
                )
            producer = self._paths[name].producer(work)
            if producer is not None:
                self.read_path = name
                return producer
        raise DataError(
            f"rank {self.rank}: readers={self.readers!r} cannot read every file of epoch "
            f"{work.epoch} (one-copy reads need HDF5 datasets without filters); use 'ring'"
        )

    def _shuffle_rng(self, epoch: int) -> np.random.Generator:
        return epoch_rng(self.seed, epoch, self.rank)

    def _stop(self, producer: Producer, coord: Coordinator, threads: list) -> None:
        coord.request_stop()
        producer.close(cancel_pending_enqueues=True)
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

    def _dequeue(self, producer: Producer, coord: Coordinator, want: int):
        start = time.perf_counter()
        try:
            if want == 0:
                return None, None
            try:
                out = producer.take(self.batch_size)
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
