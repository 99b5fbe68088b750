"""PsExchange: the parameter server as an Exchange (ps-sync and ps-async: modes.py).

    ex = registry.create("ps-sync", roles, cfg)   # roles: Cluster with "ps" and "worker" jobs
    # on a ps rank:
    stats = ex.serve()                  # answers the workers until every one is done
    # on a worker rank (what the Trainer does):
    grads = ex.attach(param_arrays)     # collective over the workers
    ex.broadcast_parameters(param_arrays, root=0)    # root's values go to the ps
    opt = ex.bind_optimizer(optimizer, schedule, steps_per_epoch)   # a RemoteOptimizer
    ...backward writes grads...
    ex.synchronize()                    # push, the ps applies, fresh parameters pulled in place
    ex.close()                          # tells the ps this worker is done

`updates` is "parameters": the trainer's optimizer does not step. The shard
map (sharding.py) is computed by worker 0, sent to the ps tasks and saved in
checkpoints with the exchange's state; the optimizer state goes to the usual
`optimizer/` group through the RemoteOptimizer.
"""

from __future__ import annotations

import time

import numpy as np

from ..deadline import Deadline, default_timeout, wait_requests
from ..errors import CollectiveTimeoutError, ExchangeError
from ..exchange.base import (
    Exchange,
    ExchangeStats,
    SyncInfo,
    bind_gradients,
    parameter_arrays,
)
from ..guard import Guard
from . import containers
from . import stats as stats_mod
from . import transport as tp
from .client import WorkerClient, request
from .remote import RemoteOptimizer
from .server import ParameterServer
from .sharding import DEFAULT_CHUNK_BYTES, held_pieces, shard_plan

#: A worker waits this much longer than a ps, so a ps names a missing worker first.
WORKER_WAIT_FACTOR, WORKER_WAIT_EXTRA_S = 1.25, 1.0


class PsExchange(Exchange):
    """The worker and ps sides of one parameter-server exchange (a subclass picks the rule)."""

    updates = "parameters"

    def __init__(
        self,
        roles,
        *,
        compression="none",
        sharding: str = "greedy",
        placement=None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        samples_per_step: int = 0,
        timeout: float | None = None,
        record: bool = False,
        log_placement: bool = False,
        container: str | None = None,
    ):
        if not roles.ranks("ps") or not roles.ranks("worker"):
            raise ExchangeError(
                f"a parameter-server exchange needs ps and worker tasks, got {roles.describe()} "
                "(run with --ps N and more than N ranks)"
            )
        self.roles, self.compression, self.record = roles, compression, record
        self.log_placement, self.container = log_placement, container
        self.sharding, self.placement, self.chunk_bytes = sharding, placement, chunk_bytes
        self.samples_per_step = samples_per_step
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self.ps_ranks, self.worker_ranks = roles.ranks("ps"), roles.ranks("worker")
        self.is_ps = roles.task.job == "ps"
        self.port = tp.Port(self._own_comm(roles.comm))
        self._stats = ExchangeStats()
        self.client = None
        self.dirty, self.version, self.pushes = False, 0, 0
        self.local = self.schedule = self.steps_per_epoch = self.park_every = None

    def make_rule(self):
        raise NotImplementedError

    def _own_comm(self, comm):
        """A duplicate of `comm` for this exchange's messages (collective over every rank of
        comm; waited for under the deadline, without spinning while the workers start up)."""
        dup, req = comm.Idup()
        deadline = Deadline(self.timeout)
        while not req.Test():
            if deadline.expired():
                raise ExchangeError(
                    f"timed out after {self.timeout:g} s waiting for every ps and worker rank "
                    "to build the parameter-server exchange"
                )
            deadline.pause()
        return dup

    # --- the ps side ------------------------------------------------------------------
    def serve(self) -> dict:
        """Run this ps task: wait for worker 0's plan, then serve until every worker is done
        (hpcdist.ps.serve(a, b, ...) serves several models at once)."""
        if not self.is_ps:
            raise ExchangeError("serve() runs on ps ranks; workers attach and synchronize")
        from .serving import serve

        return serve(self)[0]

    def take_setup(self, deadline: Deadline):
        """One look for worker 0's set-up (serving.py): answers which variables the container
        holds; once the shard plan has come, builds this task's ParameterServer.
        (server or None, whether a message was handled); past the deadline
        CollectiveTimeoutError."""
        w0 = self.worker_ranks[0]
        setup = tp.poll_object(self.port, w0, tp.TAG_CTRL)
        if setup is None:
            if deadline.expired():
                raise CollectiveTimeoutError(
                    f"timed out after {deadline.seconds:g} s waiting for worker 0 (world rank "
                    f"{w0}) to send the shard plan"
                )
            return None, False
        box = containers.get(self.container) if self.container else None
        server = None
        if setup["op"] == "held":  # the pieces of these variables this task already holds
            answer = box.held(setup["variables"]) if box is not None else []
        elif setup["op"] != "plan":
            raise ExchangeError(
                f"ps task {self.roles.task.index}: worker 0 sent {setup['op']!r} before the "
                "shard plan"
            )
        else:
            server = ParameterServer(
                self.port,
                setup["plan"],
                self.roles.task.index,
                self.worker_ranks,
                self.make_rule(),
                tp.Codec(self.compression, np.dtype(setup["dtype"])),
                timeout=self.timeout,
                container=box,
                names=setup.get("names", ()),
            )
            answer = {"ok": True}
        req, data = self.port.isend_object(answer, w0, tp.TAG_CTRL_REPLY)
        wait_requests([req], deadline, f"worker 0 (world rank {w0}) to take a set-up answer")
        return server, True

    # --- the worker side ---------------------------------------------------------------
    def attach(self, params: list) -> list:
        arrays, owners = parameter_arrays(params)
        if not all(isinstance(a, np.ndarray) for a in arrays):
            raise ExchangeError(
                "the ps exchange moves host (numpy) arrays; run its workers with --device cpu"
            )
        job = self.roles.job_comm
        self.guard = Guard(job, self.timeout, name="ps exchange")
        self._check_same(arrays)
        self.params = arrays
        self.grads = [np.zeros_like(a) for a in arrays]
        bind_gradients(owners, self.grads)
        dtype = arrays[0].dtype
        names = [getattr(p, "name", str(i)) for i, p in enumerate(owners)]
        wait = self.timeout * WORKER_WAIT_FACTOR + WORKER_WAIT_EXTRA_S
        self.plan = self._make_plan([a.shape for a in arrays], names, dtype.itemsize, wait)
        codec = tp.Codec(self.compression, dtype)
        self.client = WorkerClient(
            self.port, self.plan, self.ps_ranks, job.rank, codec, timeout=wait
        )
        if job.rank == 0 and self.log_placement:  # --log-device-placement
            print(f"hpcdist: {self.describe_placement()}", flush=True)
        if job.rank == 0:  # answered once each ps task has its server (and reserved the pieces)
            self.client.request(
                {"op": "plan", "plan": self.plan, "dtype": dtype.str, "names": names}
            )
        return self.grads

    def _make_plan(self, shapes, names, itemsize: int, wait: float):
        """The shard map. With a container, worker 0 places the variables the container
        already holds where they are held (so the models share them) and sends the map to
        the other workers; without one, every worker computes the same map."""
        fixed = None
        if self.container is not None and self.guard.rank == 0:
            message = {"op": "held", "variables": list(zip(names, shapes, strict=True))}
            held = request(self.port, self.ps_ranks, message, wait)
            fixed = held_pieces(held, names, shapes, self.container)
        plan = None
        if self.container is None or self.guard.rank == 0:
            plan = shard_plan(
                shapes,
                len(self.ps_ranks),
                policy=self.sharding,
                itemsize=itemsize,
                chunk_bytes=self.chunk_bytes,
                placement=self.placement,
                fixed=fixed,
            )
        if self.container is not None:
            plan = self.guard.bcast(plan, what="worker 0's shard map")
        return plan

    def _check_same(self, arrays) -> None:
        """Every worker attached the same shapes, in one float dtype (collective)."""
        shapes = [(tuple(a.shape), str(a.dtype)) for a in arrays]
        every = self.guard.allgather(shapes, what="every worker's parameter shapes")
        for r, theirs in enumerate(every):
            if theirs != shapes:
                raise ExchangeError(
                    f"worker {r} attached {theirs}, worker {self.guard.rank} {shapes}: every "
                    "worker must attach the same parameters"
                )
        dtypes = {a.dtype for a in arrays}
        if len(dtypes) != 1 or np.dtype(next(iter(dtypes))).kind != "f":
            found = sorted(map(str, dtypes))
            raise ExchangeError(f"the ps exchange wants one float dtype, got {found}")

    def bind_optimizer(self, optimizer, schedule, steps_per_epoch=None, *, park_every=None):
        """The ps tasks apply `optimizer`'s kind and settings by `schedule`: a RemoteOptimizer.

        Collective over the workers; root's optimizer state goes to the ps tasks.
        steps_per_epoch and park_every say when every worker meets the others in a
        collective (an epoch's end, the trainer's pre-emption check): ps-sync answers their
        last push before it only once every worker is there, so no step waits on a worker
        that waits on a collective (tensorflow #20342)."""
        self.local, self.schedule, self.steps_per_epoch = optimizer, schedule, steps_per_epoch
        self.park_every = park_every
        self._load_servers(with_params=False)
        return RemoteOptimizer(optimizer, self)

    def reset_container(self, name: str) -> int:
        """Clear container `name` on every ps task (the seed's Session.reset); variables held."""
        return sum(a["held"] for a in self.client.request({"op": "reset", "container": name}))

    def mark_dirty(self) -> None:
        """Root's parameters and optimizer state go to the ps before the next step."""
        self.dirty = True

    def broadcast_parameters(self, arrays: list, root: int = 0) -> None:
        """Root's attached parameters become the ps tasks' values and every worker's (collective);
        other arrays are broadcast among the workers."""
        self.root = root
        if len(arrays) == len(self.params) and all(
            a is b for a, b in zip(arrays, self.params, strict=True)
        ):
            if self.guard.rank == root:
                self.client.send_params(self.params)
                self.client.request({"op": "version"})  # answered once INIT is in place
            self.guard.barrier(what="root's parameters to reach the ps tasks")
            self.version = self.client.pull(self.params)
            return
        values = self.guard.bcast(
            [np.asarray(a) for a in arrays] if self.guard.rank == root else None,
            root=root,
            what="root's arrays",
        )
        for a, v in zip(arrays, values, strict=True):
            a[...] = v

    def _load_servers(self, with_params: bool) -> None:
        """Root sends its optimizer state (and parameters) to the ps tasks; every worker takes
        the global step they answer as its version (collective over the workers)."""
        step = None
        if self.guard.rank == getattr(self, "root", 0):
            if with_params:
                self.client.send_params(self.params)
            setup = {
                "op": "setup",
                "optimizer": self.local.state_dict(),
                "schedule": self.schedule,
                "steps_per_epoch": self.steps_per_epoch,
            }
            step = self.client.request(setup)[0]["version"]
        self.version = self.guard.bcast(step, what="the ps tasks' set-up")
        self.dirty = False

    def synchronize(self) -> SyncInfo:
        if self.local is None:
            raise ExchangeError("bind_optimizer(optimizer, schedule) must come before synchronize")
        if self.dirty:  # a restored state: every worker holds the same parameters
            self._load_servers(with_params=True)
        t0, wait0, bytes0 = time.perf_counter(), self.client.wait_s, self.client.wire_bytes
        remaining, epoch = self._remaining(), self.pushes // (self.steps_per_epoch or 1 << 62)
        self.version = self._push(remaining=remaining, epoch=epoch)
        self.pushes += 1
        info = SyncInfo(
            wire_bytes=self.client.wire_bytes - bytes0, seconds=time.perf_counter() - t0
        )
        st = self._stats
        st.calls += 1
        st.wire_bytes += info.wire_bytes
        st.payload_bytes += sum(g.nbytes for g in self.grads)
        st.seconds += info.seconds
        self.wait_s = self.client.wait_s - wait0
        return info

    def _remaining(self) -> int:
        """Pushes left before this worker next waits in a collective of its own (the epoch's
        end, or every `park_every` steps): 0 tells the ps it parks after this one."""
        left = [n - 1 - self.pushes % n for n in (self.steps_per_epoch, self.park_every) if n]
        return min(left, default=1)

    def _push(self, **header) -> int:
        """Push this step's gradients, pull the next version; that version."""
        return self.client.push_pull(
            self.grads, self.params, self.version, samples=self.samples_per_step, **header
        )

    def current_lr(self) -> float:
        """The schedule's lr at the last step the ps applied."""
        return float(self.schedule(max(self.version - 1, 0))) if self.schedule else 0.0

    def fetch_optimizer_state(self, local) -> None:
        """Fill `local`'s slots and step count from every ps task's pieces."""
        answers = self.client.request({"op": "state"})
        for answer in answers:
            for s in type(local).slots:
                for (t, lo, hi), piece in zip(answer["pieces"], answer[s], strict=True):
                    local.state[s][t].reshape(-1)[lo:hi] = piece
        local.steps = int(answers[0]["steps"])
        if self.schedule is not None:
            local.lr = float(self.schedule(max(local.steps - 1, 0)))

    def statistics(self) -> dict:
        """summary.json's `parameter_server` entry (collective over the workers)."""
        tasks = self.client.request({"op": "stats"})
        waits = self.guard.allgather(self.client.wait_s, what="every worker's ps wait time")
        entry = stats_mod.combine(tasks, waits)
        if self.guard.rank == 0:
            print(stats_mod.closing_line(entry), flush=True)
        return entry

    def describe_placement(self) -> str:
        """The shard map: each ps task's bytes and the pieces (tensor[lo:hi]) it holds."""
        return f"shard map ({self.plan.policy}):\n" + self.plan.describe()

    def state_dict(self) -> dict:
        if self.client is None:
            return {}
        return {"pushes": np.int64(self.pushes), **self.plan.as_arrays()}

    def load_state_dict(self, state: dict) -> None:
        if "pushes" in state:
            self.pushes = int(state["pushes"])
        saved = state.get("ps_placement")
        if saved is not None and not np.array_equal(saved, self.plan.as_arrays()["ps_placement"]):
            print(
                "hpcdist: the checkpoint's shard map differs from this run's; the whole "
                "arrays it holds are re-sharded"
            )
        self.mark_dirty()

    @property
    def stats(self) -> ExchangeStats:
        return self._stats

    def close(self) -> None:
        if self.client is not None and not self.is_ps:
            self.client.done()
            self.client = None
