"""A small ps job driven through the exchange API, for the in-process and launcher tests.

    run(nps=1, optimizer="sgd", steps=6, ...)   # on every rank of the world
      -> {"role": "ps", "stats": {...}} or {"role": "worker", "params": [...], "log": [...]}

Gradients are a known function of (worker, local step, current parameters), so a serial
float64 replay (reference()) can recompute what the ps must have applied.

As a script (launcher tests): `ps_job.py stop-worker W` / `stop-ps P` stops that task with
SIGSTOP at its 3rd step; the others must end the job within the deadline, naming it.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import hpcdist
from hpcdist import cluster, nn
from hpcdist.ps import PsAsyncExchange, PsSyncExchange

SHAPES = [(5, 3), (3,), (7,), (4, 2)]
LR = 0.1


def initial() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def gradient(w: int, i: int, params) -> list[np.ndarray]:
    """Worker w's gradient at its local step i on `params` (float64)."""
    out = []
    for t, p in enumerate(params):
        wave = np.sin(np.arange(p.size).reshape(p.shape) + 3 * i + 7 * w + t)
        out.append(0.3 * (w + 1) * np.asarray(p, np.float64) + wave)
    return out


def make_optimizer(name: str, params):
    if name == "sgd":
        return nn.SGD(params, LR, weight_decay=0.01)
    if name == "momentum":
        return nn.Momentum(params, LR, momentum=0.9, weight_decay=0.01)
    if name == "nesterov":
        return nn.Momentum(params, LR, momentum=0.9, nesterov=True)
    return nn.Adam(params, LR * 0.1)


def run(
    nps=1,
    optimizer="sgd",
    steps=6,
    *,
    per_epoch=None,
    k=None,
    slow=None,
    stop=None,
    sharding="greedy",
    compression="none",
    delay=0.0,
    timeout=30.0,
    chunk_bytes=40,
    staleness=None,
    policy="none",
    leave=None,
    container=None,
    reset=False,
    warmup=0,
):
    """One job on the world: ps tasks serve, workers train `steps` steps on gradient().

    staleness=None: ps-sync (k: replicas to aggregate); a number: ps-async with that bound and
    `policy` (and `warmup` updates of worker 0 alone). leave=(w, n): worker w stops after n
    steps (and says so)."""
    hpcdist.init()
    roles = cluster.Cluster(cluster.ClusterSpec({"ps": nps, "worker": None}))
    if staleness is None:
        kind, extra = PsSyncExchange, {"replicas_to_aggregate": k, "container": container}
    else:
        kind = PsAsyncExchange
        extra = {"staleness": staleness, "staleness_policy": policy, "warmup": warmup}
    ex = kind(
        roles,
        **extra,
        samples_per_step=4,
        timeout=timeout,
        record=True,
        sharding=sharding,
        chunk_bytes=chunk_bytes,
        compression=compression,
    )
    me = roles.task
    if stop == (me.job, me.index) and me.job == "ps":
        _stop_later(me)
    if me.job == "ps":
        wall, cpu = time.perf_counter(), time.process_time()
        stats = ex.serve()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"role": "ps", "stats": stats, "serve_wall_s": wall, "serve_cpu_s": cpu}
    time.sleep(delay)
    params = [nn.Parameter(f"p{t}", a) for t, a in enumerate(initial())]
    ex.attach(params)
    held = ex.reset_container(container) if reset and me.index == 0 else None
    ex.broadcast_parameters([p.data for p in params], root=0)
    start = [p.data.copy() for p in params]
    base = LR * 0.1 if optimizer == "adam" else LR
    schedule = nn.ConstantLR(base) if optimizer == "sgd" else nn.StepLR(base, [2], 0.5)
    opt = ex.bind_optimizer(make_optimizer(optimizer, params), schedule, per_epoch or steps)
    log = []
    if leave is not None and leave[0] == me.index:
        steps = leave[1]
    for i in range(steps):
        if stop == (me.job, me.index) and i == 2:
            _stop(me)
        if slow == me.index:
            time.sleep(0.05)
        for p, g in zip(params, gradient(me.index, i, [p.data for p in params]), strict=True):
            p.grad[...] = g
        ex.synchronize()
        log.append(ex.version)
    # statistics() is collective over the workers: a run with a leaver goes without
    stats = ex.statistics() if leave is None else None
    state = opt.state_dict()
    ex.close()
    return {
        "role": "worker",
        "params": [p.data.copy() for p in params],
        "log": log,
        "stats": stats,
        "state": state,
        "index": me.index,
        "initial": start,
        "held": held,
    }


def _stop(task) -> None:
    print(f"{task.name}: stopping itself", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)


def _stop_later(task) -> None:
    """Stop this ps task as it takes the third step's first gradient."""
    from hpcdist.ps import sync

    real = sync.SyncRule.on_push

    def on_push(rule, w, frame):
        if frame.get("version") == 2:
            _stop(task)
        return real(rule, w, frame)

    sync.SyncRule.on_push = on_push


def scale(optimizer: str, g: int) -> float:
    """The schedule of run() relative to its base lr, at global step g."""
    return 1.0 if optimizer == "sgd" or g < 2 else 0.5


def reference(optimizer: str, events: list, workers: int) -> list[np.ndarray]:
    """float64 replay of the ps: step g averages gradient(w, i, params_g) of the accepted pushes.

    events: the ps's record (worker, version, step at arrival, applied), in arrival order.
    """
    pushes = {w: [e for e in events if e[0] == w] for w in range(workers)}
    joined: dict[int, list] = {}
    for w, evs in pushes.items():
        for i, (_, version, _, applied) in enumerate(evs):
            if applied:
                joined.setdefault(version, []).append((w, i))
    params = [a.astype(np.float64) for a in initial()]
    slots = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    for g in range(len(joined)):
        members = sorted(joined[g])
        grads = [gradient(w, i, params) for w, i in members]
        mean = [sum(gs[t] for gs in grads) / len(grads) for t in range(len(params))]
        params = _update(optimizer, params, mean, slots, g, scale(optimizer, g))
    return params


def _update(name, params, grads, slots, g, scale):
    lr = LR * scale
    out = []
    for t, (p, d) in enumerate(zip(params, grads, strict=True)):
        if name in ("sgd", "momentum"):
            d = d + 0.01 * p
        if name == "sgd":
            out.append(p - lr * d)
        elif name in ("momentum", "nesterov"):
            slots[0][t] = 0.9 * slots[0][t] + d
            step = d + 0.9 * slots[0][t] if name == "nesterov" else slots[0][t]
            out.append(p - lr * step)
        else:
            lr, b1, b2 = LR * 0.1 * scale, 0.9, 0.999
            slots[0][t] = b1 * slots[0][t] + (1 - b1) * d
            slots[1][t] = b2 * slots[1][t] + (1 - b2) * d * d
            denom = np.sqrt(slots[1][t] / (1 - b2 ** (g + 1))) + 1e-8
            out.append(p - lr / (1 - b1 ** (g + 1)) * slots[0][t] / denom)
    return out


if __name__ == "__main__":
    mode, index = sys.argv[1], int(sys.argv[2])
    job = "worker" if mode == "stop-worker" else "ps"
    nps = int(os.environ.get("PS_JOB_NPS", "1"))
    result = run(nps, steps=8, stop=(job, index), timeout=float(os.environ["HPCDIST_TIMEOUT"]))
    print(f"{result['role']}: finished", flush=True)


def async_reference(optimizer: str, events: list, workers: int, policy: str = "none"):
    """float64 replay of ps-async: the n-th event is sequence number n, its gradient
    gradient(w, i, params of the version it names), applied by `policy`."""
    versions = [[a.astype(np.float64) for a in initial()]]
    slots = [np.zeros_like(p) for p in versions[0]], [np.zeros_like(p) for p in versions[0]]
    counts: dict[int, int] = {}
    step = 0
    for seq, (w, version, at, applied) in enumerate(events):
        assert at == seq
        i = counts[w] = counts.get(w, -1) + 1
        params = versions[-1]
        if applied:
            grad = gradient(w, i, versions[version])
            stale = seq - version
            if policy == "dc":  # w_then: the version the gradient was computed on
                grad = [
                    g + 0.04 * g * g * (p - b)
                    for g, p, b in zip(grad, params, versions[version], strict=True)
                ]
            lr_scale = (1.0 / max(1, stale) if policy == "lr" else 1.0) / workers
            where = step // workers
            params = _update(
                optimizer, params, grad, slots, step, scale(optimizer, where) * lr_scale
            )
            step += 1
        versions.append(params)
    return versions[-1]


def ps_tasks(comm) -> int:
    """ps tasks for an in-process test: 1 at 3 ranks, 2 at 4 (skips below 3)."""
    import pytest

    if comm.size < 3:
        pytest.skip("needs a ps and two workers")
    return 1 if comm.size == 3 else 2


def ps_events(comm, result) -> list:
    """Every ps task's event record (the same on every rank)."""
    every = comm.allgather(result["stats"]["events"] if result["role"] == "ps" else None)
    return [e for e in every if e is not None]
