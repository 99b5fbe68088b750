"""AllreduceExchange: fused, shared-memory, overlapped, compressed gradient averaging."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mpi4py import MPI

from .. import runtime
from ..backend import is_cupy, to_numpy
from ..compression import Compression
from ..errors import (
    CollectiveTimeoutError,
    ExchangeError,
    ExchangeTimeoutError,
    NonFiniteGradientError,
)
from ..guard import Guard, check_timeout, default_timeout
from .autotune import AUTOTUNE_CANDIDATES, Autotune
from .base import Exchange, ExchangeStats, SyncInfo, bind_gradients, parameter_arrays
from .broadcasts import Broadcaster
from .buckets import DEFAULT_BUCKET_BYTES, BucketLayout
from .dlpack import convert
from .nodes import NodeGroup
from .paths import BucketPaths
from .safety import Deadline, check_options
from .schedule import BucketRun
from .shm import FINAL
from .topology import check_setting, choose
from .watchdog import Watchdog

#: Buckets smaller than this go through the library's Iallreduce: the two paths tie
#: within noise below 4 KiB, the window wins from 16 KiB up (`bench allreduce --crossover`).
SMALL_BUCKET_BYTES = 4 << 10
#: The arrival check runs at attach, at the first call and every this many calls.
DEFAULT_CHECK_EVERY = 10


@dataclass
class AllreduceSyncInfo(SyncInfo):
    """SyncInfo plus the number of buckets the call reduced."""

    buckets: int = 0


@dataclass
class AllreduceStats(ExchangeStats):
    """ExchangeStats plus the autotune trials: (bucket_bytes, slowest rank's seconds)."""

    history: list = field(default_factory=list)


class AllreduceExchange(Exchange):
    """Average gradients over `comm` with fused buckets living in a shared window.

    Gradients returned by attach() are views into this rank's part of an MPI-3
    shared window (numpy), or device slabs staged through it (cupy). See
    hpcdist.exchange.base for the interface and docs/exchange.md for the rest.
    `ranks_per_node` makes pretend nodes of that many ranks for this exchange
    (None: the runtime's nodes). 16 bits go between nodes only unless
    `compress_within_node`; `topology` "auto" picks flat or hierarchical at attach.
    """

    updates = "gradients"

    def __init__(
        self,
        comm: MPI.Comm | None = None,
        *,
        compression=Compression.none,
        bucket_bytes: int | None = None,
        error_feedback: bool = False,
        check_every: int = DEFAULT_CHECK_EVERY,
        check_at_attach: bool = True,
        timeout: float | None = None,
        skip_nonfinite: bool = False,
        op: str = "average",
        autotune: bool = False,
        small_bytes: int = SMALL_BUCKET_BYTES,
        on_timeout: str = "abort",
        ranks_per_node: int | None = None,
        compress_within_node: bool = False,
        topology: str = "auto",
    ):
        check_options(op, check_every, on_timeout)
        check_setting(topology)
        self.comp = Compression.get(compression)
        t = default_timeout() if timeout is None else check_timeout(timeout)
        self.comm = (comm or runtime.world_comm()).Dup()  # after every check: nothing leaks
        self.bucket_bytes = int(bucket_bytes or DEFAULT_BUCKET_BYTES)
        self.error_feedback, self.check_every = error_feedback, check_every
        self.check_at_attach, self.ranks_per_node = check_at_attach, ranks_per_node
        self.skip_nonfinite, self.op = skip_nonfinite, op
        self.autotune, self.small_bytes = autotune, small_bytes
        self.compress_within_node, self.topology_setting = bool(compress_within_node), topology
        self.watchdog = Watchdog(self.comm, t, on_timeout)
        self._stats = AllreduceStats()
        self._call, self._in_call = 0, False
        self.layout = self.group = self.paths = self.topology = None
        self._tuner = self._broadcaster = None  # made when first needed

    @classmethod
    def from_config(cls, roles, config) -> AllreduceExchange:
        """Average over the worker ranks of `roles` with the config's compression and buckets."""
        return cls(
            roles.job_comm,
            compression=config.compression,
            bucket_bytes=config.bucket_bytes,
            error_feedback=config.error_feedback,
            timeout=getattr(config, "timeout", None),
            compress_within_node=getattr(config, "compress_within_node", False),
            topology=getattr(config, "topology", "auto"),
        )

    @property
    def timeout(self) -> float:
        """Seconds any wait of this exchange may take (settable)."""
        return self.watchdog.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self.watchdog.timeout = check_timeout(seconds)

    @property
    def on_timeout(self) -> str:
        return self.watchdog.on_timeout

    @property
    def staging(self):
        """The device staging of cupy gradients (None for numpy ones)."""
        return self.paths.staging if self.paths is not None else None

    # --- set-up ---------------------------------------------------------
    def attach(self, params: list) -> list:
        """Lay out gradients for `params` (arrays or Parameters); return the gradient views.

        Collective. A Parameter's `.grad` is bound to its view. Tensors of a DLPack
        producer (PyTorch, ...) get tensors of theirs back, viewing the same memory.
        """
        if self.layout is not None:
            raise ExchangeError("attach() was already called on this exchange")
        params, back = convert(list(params))
        arrays, owners = parameter_arrays(params)
        self.watchdog.watch(arrays, self.op, self.comp.name)
        if self.check_at_attach:
            self.watchdog.check(0)
        tuned = min([self.bucket_bytes, *AUTOTUNE_CANDIDATES])
        self.layout = BucketLayout(
            [a.shape for a in arrays],
            [a.dtype for a in arrays],
            tuned if self.autotune else self.bucket_bytes,
        )
        slots = max(len(self.layout.buckets), 1)  # the finest cut sizes the flag block
        self.layout.cut(AUTOTUNE_CANDIDATES[0] if self.autotune else self.bucket_bytes)
        self.group = NodeGroup(
            self.comm,
            ranks_per_node=self.ranks_per_node,
            timeout=self.timeout,
            on_timeout=self.on_timeout,
        )
        gpu = bool(arrays) and is_cupy(arrays[0])
        kw = dict(small_bytes=self.small_bytes, error_feedback=self.error_feedback, gpu=gpu)
        self.topology = choose(self.group, self.topology_setting, self.timeout, self.on_timeout)
        kw.update(compress_within_node=self.compress_within_node, flat=self.topology.flat)
        self.paths = BucketPaths(self.comm, self.group, self.layout, self.comp, slots, **kw)
        self.grads = self.paths.views()
        if self.autotune:
            guard = Guard(self.comm, self.timeout, name="exchange", on_timeout=self.on_timeout)
            self._tuner = Autotune(self.layout, guard, self.group.guard, self._reset_flags)
        self._reset_call()
        bind_gradients(owners, self.grads)
        return self.grads if back is None else back(self.grads)

    def _reset_call(self) -> None:
        self._run = BucketRun(self.layout.buckets, len(self.grads), self._work)
        self._in_call = False

    def _reset_flags(self) -> None:
        self.paths.reducer.flags[:, FINAL, :] = self._call  # FINAL: the new slots start clean

    # --- one call -------------------------------------------------------
    def _begin_call(self) -> None:
        self._require_attached()
        if not self._in_call:
            self._in_call = True
            self._call += 1
            self._t0 = time.perf_counter()
            self.paths.new_call()

    def gradient_ready(self, i: int) -> None:
        """Mark gradient i final; start every bucket, in order, whose gradients all are."""
        self._begin_call()
        self._run.mark_ready(i)

    def start(self) -> None:
        """Every gradient is final: begin this call and start every bucket (never blocks)."""
        self._begin_call()
        self._run.start_all()

    def progress(self) -> bool:
        """Advance the call in flight without blocking; True once synchronize() won't block."""
        if self._in_call and not self._run.done:
            self._run.progress()
        return self.done

    @property
    def done(self) -> bool:
        """True when no call is in flight or every bucket of it has finished."""
        return not self._in_call or self._run.done

    def synchronize(self) -> AllreduceSyncInfo:
        """Average every gradient over comm in place; return wire bytes, seconds, non-finite."""
        self._begin_call()
        if self.check_every and (self._call == 1 or self._call % self.check_every == 0):
            self.watchdog.check(self._call)
        self._run.drive(Deadline(self.timeout), self._timed_out)
        return self._finish_call()

    def _work(self, b):
        """The generator that exchanges bucket b in this call."""
        inv = 1.0 / self.comm.size if self.op == "average" else 1.0
        return self.paths.work(b, self._call, inv)

    def _finish_call(self) -> AllreduceSyncInfo:
        call, nbuckets = self._call, len(self.layout.buckets)
        nonfinite = self._run.nonfinite or self.paths.nonfinite(call)
        if nonfinite:
            self.paths.drop_nonfinite_residuals()
        seconds = time.perf_counter() - self._t0
        skip = nonfinite and self.skip_nonfinite
        info = AllreduceSyncInfo(self.paths.wire_bytes(), seconds, nonfinite, skip, nbuckets)
        st = self._stats
        st.calls += 1
        st.wire_bytes += info.wire_bytes
        st.payload_bytes += self.layout.nbytes
        st.seconds += seconds
        st.skipped += int(skip)
        if self._tuner is not None and self._tuner.active:
            self._autotune_step(seconds)
        self._reset_call()
        if nonfinite and not self.skip_nonfinite:
            raise NonFiniteGradientError(
                f"exchange call {call}: the averaged gradients hold NaN or inf (on some rank's "
                f"input); pass skip_nonfinite=True to skip such steps instead"
            )
        return info

    def _autotune_step(self, seconds: float) -> None:
        try:
            self.bucket_bytes = self._tuner.step(seconds)
        except CollectiveTimeoutError as exc:  # on_timeout="raise"
            self.watchdog.fail(ExchangeTimeoutError(f"exchange call {self._call}: {exc}"))
        self._stats.history = self._tuner.history

    # --- safety ---------------------------------------------------------
    def _timed_out(self) -> None:
        waits = [self.paths.describe(w) for w in self._run.waits.values()]
        self.watchdog.expired(self._call, waits)

    def _require_attached(self) -> None:
        if self.layout is None:
            raise ExchangeError("call attach(params) before exchanging gradients")

    # --- the rest of the interface -----------------------------------------
    def broadcast_parameters(self, arrays: list, root: int = 0) -> None:
        """Overwrite `arrays` in place with root's, fused per dtype (collective over comm)."""
        if self._broadcaster is None:
            self._broadcaster = Broadcaster(
                self.comm, timeout=self.timeout, on_timeout=self.on_timeout
            )
        self._broadcaster.into(arrays, root, self.timeout)

    def state_dict(self) -> dict:
        residuals = self.paths.residuals if self.paths is not None else []
        return {f"residual_{i}": to_numpy(r).copy() for i, r in enumerate(residuals)}

    def load_state_dict(self, state: dict) -> None:
        for i, r in enumerate(self.paths.residuals if self.paths is not None else []):
            key = f"residual_{i}"
            if key not in state or state[key].shape != r.shape:
                raise ValueError(f"state_dict has no {key} of shape {r.shape}")
            r[...] = state[key] if not is_cupy(r) else self.staging.xp.asarray(state[key])

    @property
    def stats(self) -> AllreduceStats:
        return self._stats

    def close(self) -> None:
        """Free the windows and communicators (collective; safe to call twice)."""
        for part in (self._tuner, self._broadcaster, self.paths, self.group):
            if part is not None:
                part.free()
        self._tuner = self._broadcaster = self.paths = self.group = None
        if self.comm != MPI.COMM_NULL:
            self.watchdog.free()
            self.comm.Free()
