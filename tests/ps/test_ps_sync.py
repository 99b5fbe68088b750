"""ps-sync at 3 and 4 ranks (1-2 ps) against a serial float64 replay of the updates."""

import numpy as np
import pytest
from ps_job import ps_events, ps_tasks, reference, run

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_sync_with_every_replica_equals_the_summed_batch(comm, optimizer):
    nps = ps_tasks(comm)
    workers = comm.size - nps
    result = run(nps, optimizer, steps=5)
    events = ps_events(comm, result)
    for record in events:  # every gradient applied at the step it was computed on
        assert [e[3] for e in record] == [True] * (5 * workers)
        assert all(e[1] == e[2] for e in record)
    if result["role"] == "worker":
        want = reference(optimizer, events[0], workers)
        for got, ref in zip(result["params"], want, strict=True):
            np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6)
        assert result["log"] == [1, 2, 3, 4, 5]
        assert result["stats"]["updates_applied"] == 5
        assert result["state"]["steps"] == 5
        assert result["stats"]["gradients_dropped"] == 0


def test_backup_workers_drop_exactly_the_stale_gradients(comm):
    nps = ps_tasks(comm)
    workers = comm.size - nps
    steps = 8
    result = run(nps, "sgd", steps=steps, k=workers - 1, slow=workers - 1)
    events = ps_events(comm, result)
    every = comm.allgather(result.get("params"))
    finals = [p for p in every if p is not None]
    for p in finals:  # the epoch ends on one version on every worker
        for a, b in zip(p, finals[0], strict=True):
            np.testing.assert_array_equal(a, b)
    for record in events:
        assert len(record) == steps * workers
        for _w, version, at, applied in record:  # dropped iff computed on an older version
            assert applied == (version == at)
            assert version <= at
        dropped = [e for e in record if not e[3]]
        assert dropped, "the slow worker's gradients should have come late"
    if result["role"] == "ps":
        stats = result["stats"]
        record = stats["events"]
        assert stats["dropped"] == sum(1 for e in record if not e[3])
        assert stats["dropped_samples"] == 4 * stats["dropped"]
    else:
        if nps == 1:  # one ps: its record is the whole story
            want = reference("sgd", events[0], workers)
            for got, ref in zip(result["params"], want, strict=True):
                np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6)
        total = result["stats"]["gradients_dropped"]
        assert total == sum(1 for record in events for e in record if not e[3])
