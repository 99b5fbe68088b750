"""One shuffle model: the queue, the ring's simulation and a plain-list model pick alike."""

import numpy as np
import pytest
from test_data_ring import reference

from hpcdist import rng
from hpcdist.data import RandomShuffleQueue
from hpcdist.data.shuffle import PickFromOldest, drop_picked
from hpcdist.data.shufflesim import ShuffleSim

WINDOW, BATCH, RECORDS = 11, 4, 97


def seeded():
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(3)))


def test_queue_and_simulation_follow_the_serial_model():
    want = reference([list(range(RECORDS))], WINDOW, BATCH, 3)
    sim = ShuffleSim(RECORDS, WINDOW, BATCH, seeded())
    got = [g.tolist() for g, _, _ in sim.advance(10_000)]
    assert got == want and sim.done
    q = RandomShuffleQueue(RECORDS + 1, WINDOW, np.int64, (), pick_from_oldest=True)
    q.restore(np.zeros(0, np.int64), PickFromOldest(None, seeded()).words())
    q.enqueue_many(np.arange(RECORDS))  # producers far ahead: the output must not change
    out = [q.dequeue_many(BATCH).tolist() for _ in range((RECORDS - WINDOW) // BATCH)]
    q.close()
    while q.size():
        out.append(q.dequeue_up_to(BATCH).tolist())
    assert out == want


def test_drop_picked_keeps_arrival_order_and_replay_reaches_the_same_state():
    order = np.arange(10) * 10
    left = drop_picked(order, 10, np.array([7, 0, 3]))
    assert left == 7 and order[:left].tolist() == [10, 20, 40, 50, 60, 80, 90]
    rule = PickFromOldest(WINDOW, seeded())
    start = rule.words()
    spans = []
    for count in (20, 15, 15, 3):
        spans.append(rule.span(count, BATCH))
        rule.choose(count, BATCH)
    np.testing.assert_array_equal(PickFromOldest.replay(start, spans, BATCH), rule.words())


def test_rng_words_round_trip_and_refuse_other_shapes():
    g = seeded()
    g.random(3)
    g.integers(0, 10, dtype=np.uint32)  # leaves a buffered uint32 (has_uint32 = 1)
    words = rng.state_words(g)
    assert words.dtype == np.uint64 and words.shape == (rng.WORDS,)
    h = rng.from_words(words)
    assert h.integers(0, 2**32, 5).tolist() == g.integers(0, 2**32, 5).tolist()
    with pytest.raises(ValueError, match="6 uint64 words"):
        rng.set_state_words(h, words[:4])
    with pytest.raises(TypeError, match="PCG64"):
        rng.state_words(np.random.Generator(np.random.MT19937(0)))
