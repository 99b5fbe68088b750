"""A worker's end of the parameter servers: push gradients, pull one version, control requests.

    client = WorkerClient(port, plan, ps_ranks, worker_index, codec, timeout=60)
    client.push_pull(grads, params, version, samples=16, remaining=3, epoch=0) -> version
    client.pull(params) -> version
    client.request({"op": "stats"}) -> [answer of each ps task]

Each ps task gets one frame holding the pieces the plan gives it; the reply
frame of each is received into its own buffer (posted before the push), and
the pieces are copied back into the parameter arrays. Every wait has the
deadline; past it the error names the ps task that did not answer.
"""

from __future__ import annotations

import time

import numpy as np

from ..deadline import Deadline, wait_requests
from ..errors import CollectiveTimeoutError
from . import transport as tp


class WorkerClient:
    """Frames, piece layout and waits of one worker towards every ps task."""

    def __init__(self, port, plan, ps_ranks, worker_index, codec, *, timeout: float):
        self.port, self.plan, self.ps_ranks = port, plan, list(ps_ranks)
        self.worker, self.codec, self.timeout = worker_index, codec, timeout
        self.layout = [plan.pieces_of(p) for p in range(plan.num_ps)]
        counts = [sum(piece.size for piece in pieces) for pieces in self.layout]
        self.push_frames = [codec.frame(n) for n in counts]
        self.reply_frames = [codec.frame(n) for n in counts]
        self.staging = [np.empty(n, codec.sum_dtype) for n in counts]
        self.small = codec.frame(0)
        self.go = tp.Frame(0, np.uint8)
        self.wait_s = 0.0
        self.wire_bytes = 0

    # --- data ---------------------------------------------------------------------
    def _pack(self, p: int, arrays) -> float:
        direct = self.codec.compressor.wire_itemsize is None  # same dtype: no staging copy
        stage, pos = (self.push_frames[p].payload if direct else self.staging[p]), 0
        for piece in self.layout[p]:
            stage[pos : pos + piece.size] = arrays[piece.tensor].reshape(-1)[piece.lo : piece.hi]
            pos += piece.size
        return 1.0 if direct else self.codec.encode_into(self.push_frames[p], stage)

    def _unpack(self, p: int, arrays) -> None:
        frame = self.reply_frames[p]
        direct = self.codec.compressor.wire_itemsize is None
        stage = frame.payload if direct else self.codec.decode(frame, out=self.staging[p])
        pos = 0
        for piece in self.layout[p]:
            flat = arrays[piece.tensor].reshape(-1)
            flat[piece.lo : piece.hi] = stage[pos : pos + piece.size]
            pos += piece.size

    def send_params(self, arrays) -> None:
        """INIT: every ps task's pieces of `arrays` become its values (worker 0, at set-up)."""
        reqs = []
        for p, rank in enumerate(self.ps_ranks):
            scale = self._pack(p, arrays)
            self.push_frames[p].set(kind=tp.INIT, worker=self.worker, scale=scale)
            reqs.append(self.port.isend_frame(self.push_frames[p], rank, tp.TAG_DATA))
        self.wait(reqs, "ps task(s) {} to take the initial parameters")

    def push_pull(
        self, grads, params, version, *, samples, remaining, epoch, seq=0, flags=0, tasks=None
    ):
        """Push `grads` (computed on `version`) to ps `tasks` (default all); the version
        pulled into `params`."""
        tasks = list(range(len(self.ps_ranks)) if tasks is None else tasks)
        recvs = [self.port.irecv_frame(self.reply_frames[p], self.ps_ranks[p]) for p in tasks]
        sends = []
        for p in tasks:
            scale = self._pack(p, grads)
            self.push_frames[p].set(
                kind=tp.PUSH,
                worker=self.worker,
                version=version,
                samples=samples,
                remaining=remaining,
                epoch=epoch,
                seq=seq,
                flags=flags,
                scale=scale,
            )
            sends.append(self.port.isend_frame(self.push_frames[p], self.ps_ranks[p], tp.TAG_DATA))
            self.wire_bytes += self.push_frames[p].nbytes
        self.wait(
            recvs + sends, f"ps task(s) {{}} to answer the gradients of step {version}", tasks
        )
        return self._take_replies(params, tasks)

    def pull(self, params, version: int = 0) -> int:
        """Every shard into `params`, once each ps task holds `version` (or a later one)."""
        tasks = list(range(len(self.ps_ranks)))
        recvs = [self.port.irecv_frame(self.reply_frames[p], self.ps_ranks[p]) for p in tasks]
        self.small.set(kind=tp.PULL, worker=self.worker, version=version)
        sends = [self.port.isend_frame(self.small, r, tp.TAG_DATA) for r in self.ps_ranks]
        self.wait(recvs + sends, "ps task(s) {} to send the parameters", tasks)
        return self._take_replies(params, tasks)

    def _take_replies(self, params, tasks) -> int:
        for p in tasks:
            self._unpack(p, params)
            self.wire_bytes += self.reply_frames[p].nbytes
        return max(self.reply_frames[p].get("version") for p in tasks)

    def reply_flags(self, p: int) -> int:
        """The header flags of the last version ps task p sent."""
        return self.reply_frames[p].get("flags")

    def post_go(self):
        """The receive of ps task 0's permission to go on (ps-async); its version: -1, or the
        version to pull at the end of an epoch."""
        return self.port.irecv_frame(self.go, self.ps_ranks[0], tp.TAG_GO)

    def done(self) -> None:
        """Tell every ps task this worker has finished."""
        self.small.set(kind=tp.DONE, worker=self.worker)
        reqs = [self.port.isend_frame(self.small, r, tp.TAG_DATA) for r in self.ps_ranks]
        self.wait(reqs, "ps task(s) {} to take this worker's goodbye")

    # --- control --------------------------------------------------------------------
    def request(self, message: dict, tasks=None) -> list:
        """Send a control message to ps tasks (default all) and return their answers in order."""
        return request(self.port, self.ps_ranks, message, self.timeout, tasks)

    def wait(self, reqs: list, what: str, tasks=None) -> None:
        """Test `reqs` until done; past the deadline name the ps tasks (in `tasks` order,
        repeated for each kind of request) whose requests are still open."""
        t0 = time.perf_counter()
        deadline = Deadline(self.timeout)
        while not tp.MPI.Request.Testall(reqs):
            if deadline.expired():
                self._timed_out(reqs, what, tasks)
            deadline.pause()
        self.wait_s += time.perf_counter() - t0

    def _timed_out(self, reqs: list, what: str, tasks) -> None:
        tasks = list(range(len(self.ps_ranks)) if tasks is None else tasks)
        silent = sorted({tasks[i % len(tasks)] for i, r in enumerate(reqs) if not r.Test()})
        names = ", ".join(f"/job:ps/task:{p} (world rank {self.ps_ranks[p]})" for p in silent)
        raise CollectiveTimeoutError(
            f"/job:worker/task:{self.worker}: timed out after {self.timeout:g} s waiting for "
            + what.format(names)
        )


def request(port, ps_ranks, message: dict, timeout: float, tasks=None) -> list:
    """Send a control message to ps tasks (indices into ps_ranks, default all) and return
    their answers in order; past the deadline the error names the task that did not answer."""
    tasks = list(range(len(ps_ranks)) if tasks is None else tasks)
    keep = [port.isend_object(message, ps_ranks[p], tp.TAG_CTRL) for p in tasks]
    answers = []
    for p in tasks:
        what = f"ps task {p} (world rank {ps_ranks[p]}) to answer {message['op']!r}"
        answers.append(
            tp.wait_object(port, ps_ranks[p], tp.TAG_CTRL_REPLY, Deadline(timeout), what)
        )
    wait_requests([r for r, _ in keep], Deadline(timeout), "the ps tasks to take a request")
    return answers
