"""ps-async at 3 and 4 ranks: a float64 replay, one version on every shard, the bound kept."""

import numpy as np
import pytest
from ps_job import async_reference, ps_events, ps_tasks, run

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("policy", ["none", "lr", "dc"])
def test_async_updates_equal_the_replay_on_every_shard(comm, policy):
    nps = ps_tasks(comm)
    result = run(nps, "momentum", steps=6, staleness=3, policy=policy, slow=0)
    events = ps_events(comm, result)
    assert all(record == events[0] for record in events)  # same gradients, same order
    if result["role"] == "worker":
        want = async_reference("momentum", events[0], comm.size - nps, policy)
        for got, ref in zip(result["params"], want, strict=True):
            np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6)
        stats = result["stats"]
        assert stats["updates_applied"] == 6 * (comm.size - nps)
        hist = {int(k): v for k, v in stats["staleness_histogram"].items()}
        measured = {}
        for _w, version, seq, _ in events[0]:
            measured[seq - version] = measured.get(seq - version, 0) + 1
        assert hist == {k: v * nps for k, v in measured.items()}  # summed over the tasks


@pytest.mark.parametrize("bound", [0, 1])
def test_no_worker_runs_more_than_the_bound_ahead_of_the_slowest(comm, bound):
    nps = ps_tasks(comm)
    workers = comm.size - nps
    result = run(nps, "sgd", steps=8, staleness=bound, slow=workers - 1)
    events = ps_events(comm, result)[0]
    clocks = [0] * workers
    for w, *_ in events:  # w's gradient of its step clocks[w]: it was let go at clocks[w]
        assert clocks[w] - min(clocks) <= bound, (w, clocks)
        clocks[w] += 1
    if result["role"] == "ps" and result["stats"]["task"] == 0:
        assert result["stats"]["max_lead"] <= bound


def test_drop_policy_drops_exactly_the_gradients_beyond_the_bound(comm):
    nps = ps_tasks(comm)
    result = run(nps, "sgd", steps=8, staleness=1, policy="drop", slow=0)
    events = ps_events(comm, result)[0]
    for _w, version, seq, applied in events:
        assert applied == (seq - version <= 1)
    if result["role"] == "worker":
        stats = result["stats"]
        assert stats["gradients_dropped"] == nps * sum(1 for e in events if not e[3])
        np.testing.assert_allclose(
            result["params"][0],
            async_reference("sgd", events, comm.size - nps, "drop")[0],
            rtol=2e-5,
            atol=2e-6,
        )


def test_a_worker_that_leaves_early_does_not_hold_the_others(comm):
    nps = ps_tasks(comm)
    workers = comm.size - nps
    result = run(nps, "sgd", steps=8, staleness=1, leave=(0, 3), per_epoch=8)
    events = ps_events(comm, result)[0]
    assert sum(1 for e in events if e[0] == 0) == 3
    assert len(events) == 3 + 8 * (workers - 1)
    if result["role"] == "worker":
        assert len(result["log"]) == (3 if result["index"] == 0 else 8)


@pytest.mark.parametrize("leave", [None, (0, 2)])
def test_warmup_applies_worker_0_alone_for_its_first_updates(comm, leave):
    """--async-warmup 3: until worker 0 has made 3 updates, every other worker's gradient is
    dropped on every task alike and counted; after it, all are applied. Worker 0 is the slow
    one, so the others push during the warm-up. When worker 0 leaves after 2 updates, the
    warm-up ends once the ps tasks hear it has gone (a run of drops, then none)."""
    nps = ps_tasks(comm)
    workers = comm.size - nps
    result = run(nps, "sgd", steps=6, staleness=2, warmup=3, slow=0, leave=leave, per_epoch=6)
    every = ps_events(comm, result)
    assert all(record == every[0] for record in every)  # every task dropped the same ones
    events, made, expected = every[0], 0, []
    last = max(i for i, e in enumerate(events) if e[0] == 0)
    for w, *_ in events[: last + 1]:
        expected.append(w == 0 or made >= 3)
        made += w == 0
    after = [e[3] for e in events[last + 1 :]]
    if leave is None:
        expected += [True] * len(after)
    else:  # drops until the goodbye is heard, then none; the warm-up did end
        ended = after.index(True)
        expected += [False] * ended + [True] * (len(after) - ended)
    assert [e[3] for e in events] == expected, events
    drops = expected.count(False)
    assert drops >= 1  # the warm-up really held someone back
    assert len(events) == (leave[1] if leave else 6) + 6 * (workers - 1)
    if result["role"] == "worker" and leave is None:
        stats = result["stats"]
        assert stats["gradients_dropped"] == stats["dropped_in_warmup"] == nps * drops
        assert stats["samples_dropped"] == nps * drops * 4  # 4 samples per push
        want = async_reference("sgd", events, workers)
        for got, ref in zip(result["params"], want, strict=True):
            np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6)
