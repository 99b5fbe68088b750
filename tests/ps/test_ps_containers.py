"""Resource containers: models in one container share variables, others keep apart, reset clears."""

import numpy as np
import pytest
from ps_job import LR, SHAPES, _update, initial, make_optimizer, run

import hpcdist
from hpcdist import cluster, nn
from hpcdist.ps import PsSyncExchange, containers, shard_plan

pytestmark = pytest.mark.mpi


def _same(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_containers_share_keep_apart_and_reset(comm):
    if comm.size < 2:
        pytest.skip("needs a ps and a worker")
    nps = 1 if comm.size < 4 else 2
    first = run(nps, "momentum", steps=3, container="shared")  # four models in one job
    second = run(nps, "sgd", steps=2, container="shared")
    apart = run(nps, "sgd", steps=2, container="other")
    after = run(nps, "sgd", steps=2, container="shared", reset=True)
    if first["role"] == "ps":
        assert containers.names() == ["other", "shared"]
        assert len(containers.get("shared")) > 0  # the last model's pieces went back in
        return
    _same(first["initial"], initial())  # an empty container: the workers' values
    _same(second["initial"], first["params"])  # the same container: the first model's values
    assert not np.array_equal(second["initial"][0], initial()[0])
    _same(apart["initial"], initial())  # another container: kept apart
    _same(after["initial"], initial())  # reset cleared its values and shapes
    if after["index"] == 0:
        # what it held: every piece of the model over the ps tasks (ps_job's chunk bound)
        assert after["held"] == len(shard_plan(SHAPES, nps, chunk_bytes=40).pieces)


# --- models trained at the same time ------------------------------------------------------
#: Three models in one job, stepped in turn by the same workers: a and b share "emb" through
#: container "shared"; c has its own "emb" (same name and shape) in container "other".
MODELS = {
    "a": ("shared", "momentum", {"emb": (5, 3), "w": (3,)}),
    "b": ("shared", "sgd", {"emb": (5, 3), "u": (7,), "v": (4, 2)}),
    "c": ("other", "sgd", {"emb": (5, 3), "u": (7,)}),
}


def _start(model: str) -> dict:
    rng = np.random.default_rng(ord(model))
    shapes = MODELS[model][2]
    return {name: rng.standard_normal(s).astype(np.float32) for name, s in shapes.items()}


def _grad(model: str, w: int, i: int, values: dict) -> dict:
    """Worker w's gradient of `model` at its step i on `values` (float64)."""
    out = {}
    for t, (name, v) in enumerate(values.items()):
        wave = np.sin(np.arange(v.size).reshape(v.shape) + 3 * i + 7 * w + 5 * t + ord(model))
        out[name] = 0.2 * (w + 1) * np.asarray(v, np.float64) + wave
    return out


def _concurrent_reference(workers: int, steps: int) -> tuple[dict, dict]:
    """float64 replay: each round a, b, c take one step in that order; a model's gradients
    are computed on the values it last pulled; the ps updates the container's current value.
    The models' final pulled values and b's starting values."""
    shared = {"shared": {}, "other": {}}
    pulled, slots = {}, {}
    for m, (box, _, _) in MODELS.items():
        start = {k: v.astype(np.float64) for k, v in _start(m).items()}
        for k, v in start.items():
            shared[box].setdefault(k, v)  # the first model's value of a shared variable wins
        pulled[m] = {k: shared[box][k].copy() for k in start}
        slots[m] = ({k: np.zeros_like(v) for k, v in start.items()}, {})
    b_start = {k: v.copy() for k, v in pulled["b"].items()}
    for i in range(steps):
        for m, (box, opt, _) in MODELS.items():
            grads = [_grad(m, w, i, pulled[m]) for w in range(workers)]
            names = list(pulled[m])
            now = [shared[box][k] for k in names]
            mean = [sum(g[k] for g in grads) / workers for k in names]
            moms = [slots[m][0][k] for k in names]
            new = _update(opt, now, mean, (moms, None), i, 1.0)
            for k, p, mom in zip(names, new, moms, strict=True):
                shared[box][k] = p
                slots[m][0][k] = mom
            pulled[m] = {k: shared[box][k].copy() for k in names}
    return pulled, b_start


def test_models_trained_at_the_same_time_share_a_container(comm):
    """Two models in one container share a variable while both train (the ps applies each
    update to the container's current value); a third, in another container, keeps its own."""
    if comm.size < 2:
        pytest.skip("needs a ps and a worker")
    hpcdist.init()
    nps, steps = (1 if comm.size < 4 else 2), 4
    roles = cluster.Cluster(cluster.ClusterSpec({"ps": nps, "worker": None}))
    exchanges = {
        m: PsSyncExchange(roles, container=box, timeout=30.0, chunk_bytes=40)
        for m, (box, _, _) in MODELS.items()
    }
    if roles.task.job == "ps":
        stats = hpcdist.ps.serve(*exchanges.values())
        assert [s["updates"] for s in stats] == [steps] * 3
        assert containers.get("shared").held([("emb", (5, 3)), ("u", (7,))])  # b's pieces
        return
    models = {}
    for m, ex in exchanges.items():  # attached one after another: a places "emb" first
        params = [nn.Parameter(k, v) for k, v in _start(m).items()]
        ex.attach(params)
        ex.broadcast_parameters([p.data for p in params], root=0)
        opt = make_optimizer(MODELS[m][1], params)
        ex.bind_optimizer(opt, nn.ConstantLR(LR), steps)
        models[m] = params
    b_start = {p.name: p.data.copy() for p in models["b"]}
    me = roles.task.index
    for i in range(steps):
        for m, ex in exchanges.items():
            values = {p.name: p.data for p in models[m]}
            for p, g in zip(models[m], _grad(m, me, i, values).values(), strict=True):
                p.grad[...] = g
            ex.synchronize()
    for ex in exchanges.values():
        ex.close()
    emb = [[p for p in ex.plan.pieces if p.tensor == 0] for ex in exchanges.values()]
    assert sorted((p.ps, p.lo, p.hi) for p in emb[0]) == sorted((p.ps, p.lo, p.hi) for p in emb[1])
    want, want_b_start = _concurrent_reference(roles.num_tasks("worker"), steps)
    np.testing.assert_array_equal(b_start["emb"], _start("a")["emb"])  # a's value, not b's
    np.testing.assert_array_equal(b_start["u"], _start("b")["u"])
    for k, v in want_b_start.items():
        np.testing.assert_allclose(b_start[k], v, rtol=1e-6)
    for m, params in models.items():
        for p in params:
            np.testing.assert_allclose(
                p.data, want[m][p.name], rtol=2e-5, atol=1e-6, err_msg=m + p.name
            )
