"""Resource containers: models in one container share variables, others keep apart, reset clears."""

import numpy as np
import pytest
from ps_job import SHAPES, initial, run

from hpcdist.ps import containers, shard_plan

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
