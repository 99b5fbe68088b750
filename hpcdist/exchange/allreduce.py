"""AllreduceExchange: fused, shared-memory, overlapped, compressed gradient averaging."""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from .. import runtime
from ..backend import is_cupy
from ..compression import Compression
from ..errors import (
    CollectiveTimeoutError,
    ExchangeError,
    ExchangeTimeoutError,
    NonFiniteGradientError,
)
from .base import Exchange, ExchangeStats, SyncInfo
from .buckets import DEFAULT_BUCKET_BYTES, BucketAutotuner, BucketLayout
from .gpu import DeviceStaging
from .mpi import MpiSum, Turns
from .safety import (
    ArrivalCheck,
    Deadline,
    default_timeout,
    describe,
    fingerprint,
    is_finite_sum,
)
from .schedule import BucketRun
from .shm import FINAL, NodeGroup, ShmReducer

#: Buckets smaller than this go through the library's Iallreduce: the two paths tie
#: within noise below 4 KiB, the window wins from 16 KiB up (`bench allreduce --crossover`).
SMALL_BUCKET_BYTES = 4 << 10
#: The arrival check runs at attach, at the first call and every this many calls.
DEFAULT_CHECK_EVERY = 10
#: Bucket sizes autotune tries, a few steps each, before keeping the fastest.
AUTOTUNE_CANDIDATES = (1 << 20, 4 << 20, 16 << 20, 64 << 20)
AUTOTUNE_TRIALS = 3


class AllreduceExchange(Exchange):
    """Average gradients over `comm` with fused buckets living in a shared window.

    Gradients returned by attach() are views into this rank's part of an MPI-3
    shared window (numpy), or device slabs staged through it (cupy). See
    hpcdist.exchange.base for the interface and docs/exchange.md for the rest.
    """

    def __init__(
        self,
        comm: MPI.Comm | None = None,
        compression=Compression.none,
        bucket_bytes: int | None = None,
        error_feedback: bool = False,
        check_every: int = DEFAULT_CHECK_EVERY,
        timeout: float | None = None,
        skip_nonfinite: bool = False,
        op: str = "average",
        autotune: bool = False,
        small_bytes: int = SMALL_BUCKET_BYTES,
        on_timeout: str = "abort",
    ):
        if op not in ("sum", "average"):
            raise ValueError(f"op must be 'sum' or 'average', got {op!r}")
        if on_timeout not in ("abort", "raise"):
            raise ValueError(f"on_timeout must be 'abort' or 'raise', got {on_timeout!r}")
        if check_every < 0:
            raise ValueError(f"check_every must be >= 0 (0: only at attach), got {check_every}")
        self.comm = (comm or runtime.world_comm()).Dup()
        self.comp = Compression.get(compression)
        self.bucket_bytes = int(bucket_bytes or DEFAULT_BUCKET_BYTES)
        self.error_feedback, self.check_every = error_feedback, check_every
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self.skip_nonfinite, self.op, self.on_timeout = skip_nonfinite, op, on_timeout
        self.autotune, self.small_bytes = autotune, small_bytes
        self.arrival = ArrivalCheck(self.comm)
        self._stats = ExchangeStats()
        self._call, self._in_call = 0, False
        self.layout = self.reducer = self.group = self.staging = None
        self._residuals: list = []
        self.check_at_attach = True
        self.turns = Turns()  # posting order of the "mpi" buckets on self.comm

    @classmethod
    def from_config(cls, roles, config) -> AllreduceExchange:
        """Average over the worker ranks of `roles` with the config's compression and buckets."""
        return cls(
            comm=roles.job_comm,
            compression=config.compression,
            bucket_bytes=config.bucket_bytes,
            error_feedback=config.error_feedback,
            timeout=getattr(config, "timeout", None),
        )

    # --- set-up ---------------------------------------------------------
    def attach(self, params: list) -> list:
        if self.layout is not None:
            raise ExchangeError("attach() was already called on this exchange")
        params = list(params)
        self._lines = describe(params, self.op, self.comp.name)
        self._key = fingerprint(self._lines)  # digested once; each check sends this number
        if self.check_at_attach:
            self._check(0)
        slots_bytes = (
            min([self.bucket_bytes, *AUTOTUNE_CANDIDATES]) if self.autotune else self.bucket_bytes
        )
        self.layout = BucketLayout(
            [p.shape for p in params], [p.dtype for p in params], slots_bytes
        )
        slots = max(len(self.layout.buckets), 1)
        self.layout.cut(AUTOTUNE_CANDIDATES[0] if self.autotune else self.bucket_bytes)
        self._tuner = (
            BucketAutotuner(AUTOTUNE_CANDIDATES, AUTOTUNE_TRIALS) if self.autotune else None
        )
        self.group = NodeGroup(self.comm)
        self.reducer = ShmReducer(self.group, self.layout, self.comp, slots)
        region = self.reducer.shared.regions[self.group.node.rank]
        gpu = bool(params) and is_cupy(params[0])
        if gpu:
            self.staging = DeviceStaging(self.layout, self.reducer, self.comp)
        self.grads = [
            self.staging.view(i) if gpu else self.layout.view(region, i) for i in range(len(params))
        ]
        region[...] = 0  # padding between tensors must hold zeros: it is summed too
        if self.error_feedback and self.comp.wire_itemsize:
            xp = self.staging.xp if gpu else np
            self._residuals = [xp.zeros(s.size, dtype=s.dtype) for s in self.layout.slabs]
        self._reset_call()
        return self.grads

    def _reset_call(self) -> None:
        self._run = BucketRun(self.layout.buckets, len(self.grads), self._work)
        self._in_call = False

    def _strategy(self, b) -> str:
        if self.comm.size == 1:
            return "local"
        nbytes = b.size * self.layout.slabs[b.slab].dtype.itemsize
        return (
            "mpi"
            if nbytes < self.small_bytes or (self.staging and self.staging.cuda_aware)
            else "shm"
        )

    # --- one call -------------------------------------------------------
    def _begin_call(self) -> None:
        if not self._in_call:
            self._in_call = True
            self._call += 1
            self._t0 = time.perf_counter()
            kinds = [(b.index, self._strategy(b)) for b in self.layout.buckets]
            self.reducer.new_call([i for i, k in kinds if k == "shm"])
            self.turns.reset([i for i, k in kinds if k == "mpi"])

    def gradient_ready(self, i: int) -> None:
        """Mark gradient i final; start every bucket, in order, whose gradients all are."""
        self._require_attached()
        self._begin_call()
        self._run.mark_ready(i)

    def synchronize(self) -> SyncInfo:
        """Average every gradient over comm in place; return wire bytes, seconds, non-finite."""
        self._require_attached()
        self._begin_call()
        try:
            if self.check_every and (self._call == 1 or self._call % self.check_every == 0):
                self._check(self._call)
            self._run.drive(Deadline(self.timeout), self._timed_out)
        except ExchangeTimeoutError as exc:
            self._fail(exc)
        return self._finish_call()

    def _work(self, b):
        """The generator that exchanges bucket b in this call."""
        kind = self._strategy(b)
        residual = self._residuals[b.slab][b.start : b.stop] if self._residuals else None
        inv = 1.0 / self.comm.size if self.op == "average" else 1.0
        if self.staging is not None:
            return self.staging.run(b, self._call, kind, inv, self.comm, residual, self.turns)
        if kind == "shm":
            res = self._residuals[b.slab] if self._residuals else None
            return self.reducer.reduce(b, self._call, inv, res)
        return self._mpi_bucket(b, kind, inv, residual)

    def _mpi_bucket(self, b, kind: str, inv: float, residual):
        buf = self.reducer.grads(self.group.node.rank, b.slab)[b.start : b.stop]
        if kind == "mpi":
            yield from self.turns.run(
                b.index, MpiSum(self.comm, buf, self.comp, residual), ("mpi", b, [])
            )
        if inv != 1.0:
            buf *= buf.dtype.type(inv)
        return not is_finite_sum(buf)

    def _finish_call(self) -> SyncInfo:
        call = self._call
        nonfinite = self._run.nonfinite or any(
            self.reducer.nonfinite(b, call) for b in self.layout.buckets
        )
        seconds = time.perf_counter() - self._t0
        info = SyncInfo(
            self._wire_bytes(),
            seconds,
            nonfinite,
            nonfinite and self.skip_nonfinite,
            len(self.layout.buckets),
        )
        st = self._stats
        st.calls += 1
        st.wire_bytes += info.wire_bytes
        st.payload_bytes += self.layout.nbytes
        st.seconds += seconds
        st.skipped += int(info.skip)
        if self._tuner is not None and self._tuner.active:
            self._autotune_step(seconds)
        self._reset_call()
        if nonfinite and not self.skip_nonfinite:
            raise NonFiniteGradientError(
                f"exchange call {call}: the averaged gradients hold NaN or inf (on some rank's "
                f"input); pass skip_nonfinite=True to skip such steps instead"
            )
        return info

    def _wire_bytes(self) -> int:
        """Bytes this rank sends per call: 2(p-1)/p of each bucket at the wire width."""
        total, p = 0.0, self.comm.size
        for b in self.layout.buckets:
            dt = self.layout.slabs[b.slab].dtype
            width = (
                self.comp.wire_itemsize
                if self.comp.wire_itemsize and dt.kind == "f"
                else dt.itemsize
            )
            if self._strategy(b) == "shm" and self.group.num_nodes > 1:
                n, m = self.group.node.size, self.group.num_nodes
                total += 2 * (n - 1) * b.size * width / n
                if self.group.node.rank == 0:
                    total += 2 * (m - 1) * b.size * width / m
            else:
                total += 2 * (p - 1) * b.size * width / p
        return round(total)

    def _autotune_step(self, seconds: float) -> None:
        worst = self.comm.allreduce(seconds, op=MPI.MAX)
        nxt = self._tuner.record(self.layout.bucket_bytes, worst)
        self._stats.history = self._tuner.history
        if nxt is None or nxt == self.layout.bucket_bytes:
            return
        node = self.group.node
        node.Barrier()  # every bucket of the old cut is finished on this node
        self.layout.cut(nxt)
        if node.rank == 0:
            self.reducer.flags[:, FINAL, :] = self._call  # FINAL: the new slots start clean
        node.Barrier()
        self.bucket_bytes = nxt

    # --- safety ---------------------------------------------------------
    def _check(self, call: int) -> None:
        try:
            self.arrival.check(call, self._lines, self.timeout, key=self._key)
        except CollectiveTimeoutError as exc:
            self._fail(
                ExchangeTimeoutError(
                    f"exchange call {call} timed out after {self.timeout:g} s: {exc}"
                )
            )

    def _timed_out(self) -> None:
        waits = [
            self.reducer.describe(w)
            if w[0] != "mpi"
            else f"bucket {w[1].index}: the library allreduce over all {self.comm.size} ranks"
            for w in self._run.waits.values()
        ]
        more = f" (+{len(waits) - 3} more)" if len(waits) > 3 else ""
        text = (
            f"exchange call {self._call} timed out after {self.timeout:g} s; waiting for "
            + "; ".join(waits[:3])
            + more
        )
        # Who is missing? The ranks that timed out meet in an arrival check; absentees are named.
        try:
            self.arrival.check(
                self._call, self._lines, min(self.timeout, max(2.0, self.timeout / 5)), self._key
            )
            text += "; every rank reached the diagnosis, so the stall is inside MPI"
        except (CollectiveTimeoutError, ExchangeError) as diag:
            text += f". Diagnosis: {diag}"
        raise ExchangeTimeoutError(text)

    def _fail(self, exc: ExchangeTimeoutError) -> None:
        if self.on_timeout == "abort":
            runtime.abort(f"{type(exc).__name__}: {exc}", exitcode=1, grace_s=1.0)
        raise exc

    def _require_attached(self) -> None:
        if self.layout is None:
            raise ExchangeError("call attach(params) before exchanging gradients")

    # --- the rest of the interface -----------------------------------------
    def broadcast_parameters(self, arrays: list, root: int = 0) -> None:
        from .flat import broadcast_into

        broadcast_into(list(arrays), root, self.comm, self.timeout)

    def state_dict(self) -> dict:
        from ..backend import to_numpy

        return {f"residual_{i}": to_numpy(r).copy() for i, r in enumerate(self._residuals)}

    def load_state_dict(self, state: dict) -> None:
        for i, r in enumerate(self._residuals):
            key = f"residual_{i}"
            if key not in state or state[key].shape != r.shape:
                raise ValueError(f"state_dict has no {key} of shape {r.shape}")
            r[...] = state[key] if not is_cupy(r) else self.staging.xp.asarray(state[key])

    @property
    def stats(self) -> ExchangeStats:
        return self._stats

    def close(self) -> None:
        if self.staging is not None:
            self.staging.free()
            self.staging = None
        if self.reducer is not None:
            self.reducer.free()
            self.group.free()
            self.reducer = None
        if self.comm != MPI.COMM_NULL:
            self.arrival.comm.Free()
            self.comm.Free()
