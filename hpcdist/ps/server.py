"""A parameter-server task: holds its shard in float32, applies the optimizer, answers workers.

    server = ParameterServer(port, plan, ps_index, worker_ranks, rule, codec, timeout=60)
    stats = server.serve()      # returns when every worker has said DONE

The shard is one flat array of the pieces the plan gives this task (in
(tensor, lo) order), wrapped in one hpcdist.nn Parameter, so the optimizers
of hpcdist.nn (SGD, Momentum, Nesterov, Adam: all elementwise) update it as
they would the whole tensors. The lr comes from the workers' schedule at
the global step (the number of updates applied). What to do with each
gradient that arrives is the `rule`'s business (sync.py, staleness.py).

With a container (containers.py) the server starts its pieces from the
container's values, copies a piece back in before an update when another
model changed it since, and writes every piece back after each update: models
served at the same time (serving.py) share the variables of one container.
"""

from __future__ import annotations

import time

import numpy as np

from .. import nn
from ..deadline import Deadline
from . import containers
from . import transport as tp
from .stats import ServerStats

#: Elements of the mean summed at a time (1 MiB of float32: the partial sums stay in cache).
MEAN_PIECE = 1 << 18

OPTIMIZER_CLASSES = {"SGD": nn.SGD, "Momentum": nn.Momentum, "Adam": nn.Adam}


class ParameterServer:
    """One ps task's state and serve loop (the rule decides when to apply and whom to answer)."""

    def __init__(
        self, port, plan, ps_index, worker_ranks, rule, codec, *, timeout, container=None, names=()
    ):
        self.port, self.plan, self.index = port, plan, ps_index
        self.names, self.fresh = list(names), True
        self.workers = list(worker_ranks)  # world rank of worker task w
        self.rule, self.codec, self.timeout = rule, codec, timeout
        self.pieces = plan.pieces_of(ps_index)
        n = sum(p.size for p in self.pieces)
        self.shard = nn.Parameter(f"ps{ps_index}", np.zeros(n, codec.sum_dtype))
        self.optimizer = None
        self.schedule = None
        self.step = 0  # global step: updates applied
        self.version = 0  # gradients taken (applied or dropped by ps-async): the shard's version
        self.pulls: list[tuple[int, int]] = []  # (worker, version it waits for)
        self.slots = [codec.frame(n) for _ in self.workers]  # one pending frame per worker
        self.small = codec.frame(0)
        self.out = [codec.frame(n), codec.frame(n)]  # packed versions, double-buffered
        self.out_reqs: list[list] = [[], []]
        self.slot = 0  # the output frame holding the current version
        # Same dtype on the wire as in the sum: the shard lives in an output frame and is sent
        # as it is, no packing copy per version (moved to the other frame only when a send
        # of this one is still in flight as it changes).
        self.direct = codec.compressor.wire_itemsize is None and codec.wire_dtype == codec.sum_dtype
        if self.direct:
            self.shard.data = self.out[0].payload
        self.other_reqs: list = []
        self.done = [False] * len(self.workers)
        self.stats = ServerStats(ps_index)
        self.box = None  # this model's pieces bound to its container (containers.py)
        if container is not None:
            pieces = [
                (k, lo, hi) for k, (lo, hi) in zip(self._keys(), self._offsets(), strict=True)
            ]
            self.box = containers.Binding(container, pieces)
        rule.bind(self)

    # --- the loop ---------------------------------------------------------------
    def serve(self) -> dict:
        """Answer workers until every one has said DONE; this task's statistics."""
        backoff = Deadline(self.timeout)
        while not self.finished:
            if self.poll():
                backoff.reset_backoff()
            else:
                backoff.pause()
        return self.finish()

    @property
    def finished(self) -> bool:
        """Every worker has said DONE."""
        return all(self.done)

    def poll(self) -> bool:
        """Handle the next message if one has come (True), else do the idle work (False)."""
        msg, status = self.port.probe()
        if msg is None:
            self._idle()
            return False
        t0 = time.perf_counter()
        self._handle(msg, status)
        self.stats.busy_s += time.perf_counter() - t0
        return True

    def finish(self) -> dict:
        """Wait for the last sends; put back pieces a reset took away; this task's statistics."""
        self._finish_sends()
        if self.box is not None:  # the next model in this container starts here
            self.box.store(self.shard.data, only_new=True)  # what a reset took away
        return self.stats.as_dict()

    def _handle(self, msg, status) -> None:
        src, tag = status.Get_source(), status.Get_tag()
        if tag == tp.TAG_CTRL:
            self._control(src, tp.Port.receive_object(msg, status))
            return
        w = self.workers.index(src)
        size = status.Get_count(tp.MPI.BYTE)
        frame = self.slots[w] if size > tp.HEADER_BYTES else self.small
        self.stats.bytes_in += tp.Port.receive_frame(msg, status, frame)
        kind = frame.get("kind")
        if kind == tp.PUSH:
            self.rule.on_push(w, frame)
        elif kind == tp.PULL:  # answered once this task has the version asked for
            self.pulls.append((w, frame.get("version")))
            self._answer_pulls()
        elif kind == tp.INIT:
            self._writable()
            self.codec.decode(frame, out=self.shard.data)
            if self.box is not None:
                self.box.refresh(self.shard.data, initial=self.fresh)  # shared values win first
                self.box.store(self.shard.data, only_new=self.fresh)  # a restored state is ours
            self.fresh = False
            self._pack()
        elif kind == tp.DONE:
            self.done[w] = True
            self.rule.on_done(w)

    def _control(self, src: int, request: dict) -> None:
        op = request["op"]
        if op == "setup":
            self._setup(request)
            answer = {"step": self.step, "version": self.version}
        elif op == "reset":
            answer = {"held": containers.reset(request["container"])}
        elif op == "version":
            answer = {"step": self.step, "version": self.version}
        elif op == "state":
            answer = self.optimizer_state()
        elif op == "stats":
            answer = self.stats.as_dict()
        else:
            raise ValueError(f"ps task {self.index}: unknown control request {op!r}")
        req, data = self.port.isend_object(answer, src, tp.TAG_CTRL_REPLY)
        self.other_reqs.append((req, data))

    def _idle(self) -> None:
        self.other_reqs = [(r, d) for r, d in self.other_reqs if not r.Test()]
        for reqs in self.out_reqs:
            reqs[:] = [r for r in reqs if not r.Test()]
        self.rule.check_liveness()

    # --- what rules use -----------------------------------------------------------
    def mean_of(self, workers: list[int], weights=None) -> np.ndarray:
        """The mean of the pending gradients of `workers`, summed in worker order, into .grad."""
        g = self.shard.grad
        if self.direct:  # in cache-sized pieces: each gradient read once, the mean written once
            parts = [self.slots[w].payload for w in sorted(workers)]
            inv = g.dtype.type(1.0 / len(parts))
            for lo in range(0, g.size, MEAN_PIECE):
                out, hi = g[lo : lo + MEAN_PIECE], lo + MEAN_PIECE
                if len(parts) == 1:
                    out[...] = parts[0][lo:hi]
                else:
                    np.add(parts[0][lo:hi], parts[1][lo:hi], out=out)
                for p in parts[2:]:
                    out += p[lo:hi]
                out *= inv
            return g
        for i, w in enumerate(sorted(workers)):
            self.codec.decode(self.slots[w], out=g, add=i > 0)
        g *= 1.0 / len(workers)
        return g

    def apply(self, lr_scale: float = 1.0, at: int | None = None) -> None:
        """One optimizer step on the shard with .grad; lr from the schedule at step `at`
        (default: the global step), times lr_scale."""
        if self.optimizer is None:
            raise RuntimeError(f"ps task {self.index}: a gradient came before the set-up")
        self.optimizer.lr = self.schedule(self.step if at is None else at) * lr_scale
        self._writable()
        if self.box is not None:
            self.box.refresh(self.shard.data)  # what other models in the container wrote since
        self.optimizer.step()
        if self.box is not None:
            self.box.store(self.shard.data)
        self.step += 1
        self.stats.updates += 1
        self.skip()

    def skip(self) -> None:
        """Count a gradient taken (applied, or dropped in ps-async): the next version."""
        self.version += 1
        self._pack()
        self._answer_pulls()

    def _answer_pulls(self) -> None:
        ready = [w for w, v in self.pulls if v <= self.version]
        self.pulls = [(w, v) for w, v in self.pulls if v > self.version]
        for w in ready:
            self.reply(w)

    def reply(self, w: int) -> None:
        """Send worker w the current version of the shard (the frame is shared: no per-worker
        fields, it may be in flight to several workers at once)."""
        frame = self.out[self.slot]
        req = self.port.isend_frame(frame, self.workers[w], tp.TAG_REPLY)
        self.out_reqs[self.slot].append(req)
        self.rule.on_reply(w)
        self.stats.bytes_out += frame.nbytes

    def _pack(self) -> None:
        """Write the current version into its output frame (waits for that frame's old sends);
        direct: the values are there already, only the header is new."""
        if self.direct:
            self._writable()
            self.out[self.slot].set(kind=tp.PARAMS, version=self.version, flags=self.rule.flags)
            return
        self.slot = self.version % 2
        self._wait_sends(self.slot)
        frame = self.out[self.slot]
        scale = self.codec.encode_into(frame, self.shard.data)
        frame.set(kind=tp.PARAMS, version=self.version, scale=scale, flags=self.rule.flags)

    def _wait_sends(self, slot: int) -> None:
        """Until output frame `slot` is no longer being sent (the deadline ends the job)."""
        deadline = Deadline(self.timeout)
        while not tp.MPI.Request.Testall(self.out_reqs[slot]):
            if deadline.expired():
                self.abort(f"the workers to take an earlier version than {self.version}")
            deadline.pause()
        self.out_reqs[slot] = []

    def _writable(self) -> None:
        """Before the shard (direct: an output frame) changes: if a send of that frame is
        still in flight, move the values to the other frame, once its own sends are done."""
        if not self.direct:
            return
        if tp.MPI.Request.Testall(self.out_reqs[self.slot]):
            self.out_reqs[self.slot] = []
            return
        other = 1 - self.slot
        self._wait_sends(other)
        self.out[other].payload[...] = self.shard.data
        self.shard.data, self.slot = self.out[other].payload, other

    def _finish_sends(self) -> None:
        deadline = Deadline(self.timeout)
        reqs = [r for r, _ in self.other_reqs] + self.out_reqs[0] + self.out_reqs[1]
        while not tp.MPI.Request.Testall(reqs):
            if deadline.expired():
                self.abort("the workers to take their last replies")
            deadline.pause()

    def abort(self, what: str) -> None:
        from .. import runtime

        runtime.abort(
            f"CollectiveTimeoutError: ps task {self.index} (/job:ps/task:{self.index}) timed out "
            f"after {self.timeout:g} s waiting for {what}",
            exitcode=1,
            grace_s=1.0,
        )

    def worker_name(self, w: int) -> str:
        return f"/job:worker/task:{w} (world rank {self.workers[w]})"

    # --- optimizer state ------------------------------------------------------------
    def _setup(self, request: dict) -> None:
        state, self.schedule = request["optimizer"], request["schedule"]
        cls = OPTIMIZER_CLASSES[state["kind"]]
        opt = cls([self.shard], float(state["lr"]))
        for h in cls.hyper:
            setattr(opt, h, type(getattr(opt, h))(state[h]))
        for s in cls.slots:
            for p, (lo, hi) in zip(self.pieces, self._offsets(), strict=True):
                full = state.get(f"{s}.{p.tensor}")
                if full is not None:
                    opt.state[s][0][lo:hi] = np.asarray(full).reshape(-1)[p.lo : p.hi]
        opt.steps = self.step = int(state["steps"])
        self.version = int(request.get("version", self.step))
        self.optimizer = opt
        self.rule.on_setup(request)
        self._pack()

    def _offsets(self) -> list[tuple[int, int]]:
        out, pos = [], 0
        for p in self.pieces:
            out.append((pos, pos + p.size))
            pos += p.size
        return out

    def _keys(self) -> list[tuple]:
        """Each piece's identity in a container: (variable name, shape, lo, hi)."""
        names = self.names or [str(t) for t in range(len(self.plan.shapes))]
        return [(names[p.tensor], self.plan.shapes[p.tensor], p.lo, p.hi) for p in self.pieces]

    def optimizer_state(self) -> dict:
        """{"steps", "pieces": [(tensor, lo, hi)], slot: [piece arrays]} for a checkpoint."""
        opt = self.optimizer
        out = {"steps": opt.steps, "pieces": [(p.tensor, p.lo, p.hi) for p in self.pieces]}
        for s in type(opt).slots:
            out[s] = [opt.state[s][0][lo:hi].copy() for lo, hi in self._offsets()]
        return out
