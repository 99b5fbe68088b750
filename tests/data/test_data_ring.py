"""ShuffleRing against a plain-list model of the pick-from-oldest shuffle."""

import threading

import numpy as np

from hpcdist.data.ring import ShuffleRing


def reference(blocks, window, batch, seed):
    """Serial model: list in arrival order; pick among the oldest window + batch."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    items, out, pending = [], [], list(blocks)
    while True:
        while pending and len(items) < window + batch:
            items.extend(pending.pop(0))
        w = min(len(items), window + batch)
        n = min(batch, w)
        if n == 0:
            return out
        pick = rng.choice(w, size=n, replace=False)
        out.append([items[i] for i in pick])
        items = [v for i, v in enumerate(items) if i not in set(pick.tolist())]


def test_ring_matches_the_model_under_concurrent_readers():
    sizes = [5, 9, 1, 13, 7, 4] * 9
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    blocks = [list(range(a, a + m)) for a, m in zip(starts, sizes, strict=True)]
    ring = ShuffleRing(
        window=11,
        batch=4,
        budget=11 + 4 + 13,
        shape=(2,),
        dtypes=(np.float32, np.int64),
        rng=np.random.Generator(np.random.PCG64(np.random.SeedSequence(3))),
        stall_timeout=30,
        name="t",
    )
    it, lock = iter(range(len(blocks))), threading.Lock()

    def reader():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            lo = 0
            for s0, s1 in ring.reserve(i, len(blocks[i])):
                vals = np.array(blocks[i][lo : lo + s1 - s0])
                ring.x[s0:s1] = vals[:, None]
                ring.y[s0:s1] = vals
                lo += s1 - s0
            ring.commit(i, blocks[i][0])

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    closer = threading.Thread(target=lambda: [t.join() for t in threads] and ring.close())
    closer.start()
    got = []
    while len(got) < 100:
        out = ring.take(4)
        if out is None:
            break
        np.testing.assert_array_equal(out[0][:, 0], out[1])  # rows stay paired
        got.append(out[1].tolist())
    closer.join()
    assert got == reference(blocks, 11, 4, 3)
    assert ring.moved > 0  # the test exercised reclaiming by moving rows
