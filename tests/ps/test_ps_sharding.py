"""Sharding: every element placed once, greedy balance by bytes, round-robin by count, pins."""

import numpy as np
import pytest

from hpcdist.bench.allreduce import resnet50_like
from hpcdist.ps.sharding import held_pieces, shard_plan


def _coverage(plan):
    """Every element of every tensor held exactly once (checked element by element)."""
    for t, shape in enumerate(plan.shapes):
        hits = np.zeros(int(np.prod(shape)), np.int64)
        for p in plan.pieces:
            if p.tensor == t:
                hits[p.lo : p.hi] += 1
        assert (hits == 1).all(), f"tensor {t}"


def _loads(plan):
    """Bytes per task counted from the pieces (independent of plan.bytes_per_ps)."""
    loads = [0] * plan.num_ps
    for p in plan.pieces:
        loads[p.ps] += (p.hi - p.lo) * plan.itemsize
    return loads


@pytest.mark.parametrize("num_ps", [2, 3, 4])
def test_greedy_balances_the_resnet_list_and_round_robin_does_not(num_ps):
    shapes = [(n,) for n in resnet50_like()]
    greedy = shard_plan(shapes, num_ps)
    robin = shard_plan(shapes, num_ps, policy="round-robin")
    _coverage(greedy)
    _coverage(robin)
    g, r = _loads(greedy), _loads(robin)
    assert g == greedy.bytes_per_ps() and sum(g) == sum(r) == 4 * sum(n for (n,) in shapes)
    assert max(g) / np.mean(g) <= 1.10
    assert greedy.imbalance() == pytest.approx(max(g) / np.mean(g))
    assert max(r) / np.mean(r) > max(g) / np.mean(g)
    # the default chunk bound, written out: BytePS's 4,096,000 bytes
    assert all(p.size * 4 <= 4_096_000 for p in greedy.pieces)
    assert max(p.size for p in greedy.pieces) * 4 > 2_048_000  # large tensors are chunked near it


def test_round_robin_places_whole_tensors_by_count():
    plan = shard_plan([(10,), (1000,), (10,), (1000,), (5, 2)], 2, policy="round-robin")
    assert [(p.tensor, p.lo, p.hi, p.ps) for p in plan.pieces] == [
        (0, 0, 10, 0), (1, 0, 1000, 1), (2, 0, 10, 0), (3, 0, 1000, 1), (4, 0, 10, 0),
    ]  # fmt: skip
    assert plan.bytes_per_ps() == [120, 8000]  # TF1's imbalance, by construction


def test_greedy_splits_large_tensors_into_near_equal_chunks_largest_first():
    plan = shard_plan([(3, 10), (7,), (2,)], 2, chunk_bytes=40)  # at most 10 floats a piece
    big = sorted((p.lo, p.hi) for p in plan.pieces if p.tensor == 0)
    assert big == [(0, 10), (10, 20), (20, 30)]
    _coverage(plan)
    # largest first on the least loaded task: 10->0, 10->1, 10->0, 7->1, 2->1
    assert _loads(plan) == [80, 76]


def test_placement_pins_tensors_by_function_or_device_string():
    shapes = [(100,), (100,), (3,)]
    by_fn = shard_plan(shapes, 2, placement=lambda i, shape: 1 if i < 2 else None)
    assert {p.tensor: p.ps for p in by_fn.pieces if p.tensor < 2} == {0: 1, 1: 1}
    assert [p.ps for p in by_fn.pieces if p.tensor == 2] == [0]
    by_name = shard_plan(shapes, 3, placement=["/job:ps/task:2", None, "/job:worker/task:0"])
    assert [p.ps for p in by_name.pieces if p.tensor == 0] == [2]
    _coverage(by_name)


def test_fixed_pieces_stay_where_a_container_holds_them_and_count_in_the_balance():
    shapes = [(15,), (8,), (7,)]
    held = {0: [(1, 7, 15), (0, 0, 7)]}  # a shared variable, already on the tasks, split
    plan = shard_plan(shapes, 2, chunk_bytes=40, fixed=held)
    _coverage(plan)
    assert sorted((p.ps, p.lo, p.hi) for p in plan.pieces if p.tensor == 0) == [
        (0, 0, 7),
        (1, 7, 15),
    ]
    # the rest placed greedily around them: 8 to the task with 7, then 7 to the one with 8
    assert {p.tensor: p.ps for p in plan.pieces if p.tensor > 0} == {1: 0, 2: 1}
    assert _loads(plan) == [4 * 15, 4 * 15]
    with pytest.raises(ValueError, match="do not cover its 15 elements"):
        shard_plan(shapes, 2, fixed={0: [(0, 0, 7), (1, 8, 15)]})
    with pytest.raises(ValueError, match="outside 0..1"):
        shard_plan(shapes, 2, fixed={0: [(2, 0, 15)]})


def test_held_pieces_from_the_tasks_answers(capsys):
    names, shapes = ["emb", "b", "c"], [(5, 3), (7,), (2,)]
    answers = [[("emb", (5, 3), 0, 7), ("c", (2,), 0, 1)], [("emb", (5, 3), 7, 15)]]
    assert held_pieces(answers, names, shapes, "shared") == {0: [(0, 0, 7), (1, 7, 15)]}
    out = capsys.readouterr().out
    assert "container 'shared' holds variable 'c' (2,)" in out and "does not share it" in out
    assert held_pieces([[], []], names, shapes, "shared") == {}


def test_bad_sharding_input_is_named():
    with pytest.raises(ValueError, match="sharding policy"):
        shard_plan([(3,)], 2, policy="random")
    with pytest.raises(ValueError, match="tensor 0 on ps task 5"):
        shard_plan([(3,)], 2, placement=lambda i, s: 5)
    with pytest.raises(ValueError, match="1 device"):
        shard_plan([(3,), (4,)], 2, placement=["/job:ps/task:0"])
    with pytest.raises(ValueError, match="num_ps"):
        shard_plan([(3,)], 0)


def test_the_map_travels_as_arrays_and_prints():
    plan = shard_plan([(4,), (6,)], 2)
    table = plan.as_arrays()["ps_placement"]
    assert table.tolist() == [[p.tensor, p.lo, p.hi, p.ps] for p in plan.pieces]
    text = plan.describe(["w", "b"])
    assert "/job:ps/task:0  24 bytes: b[0:6]" in text and "/job:ps/task:1  16 bytes: w[0:4]" in text
