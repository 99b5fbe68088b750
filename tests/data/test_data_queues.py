"""Queues against the TF1 table (ANCHORS section 5): open and closed behaviour of every op."""

import threading
import time

import numpy as np
import pytest

from hpcdist.data import FIFOQueue, PaddingFIFOQueue, RandomShuffleQueue
from hpcdist.errors import CancelledError, DeadlineExceededError, OutOfRangeError


def later(fn, *args, delay=0.1):
    """Run fn(*args) in a thread after `delay`; the thread is returned, started."""
    t = threading.Thread(target=lambda: (time.sleep(delay), fn(*args)), daemon=True)
    t.start()
    return t


def in_thread(fn, *args):
    """Start fn(*args) in a thread; returns (thread, box) where box gets 'value' or 'error'."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except Exception as ex:  # noqa: BLE001
            box["error"] = ex

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def two_component(capacity=4):
    return FIFOQueue(capacity, [np.float32, np.int64], [(2,), ()])


def test_fifo_order_components_and_bare_single():
    q = two_component(5)
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    q.enqueue_many((x, np.arange(4)))
    q.enqueue((x[0] + 100, 9))
    a, b = q.dequeue_many(3)
    np.testing.assert_array_equal(a, x[:3])
    np.testing.assert_array_equal(b, [0, 1, 2])
    a, b = q.dequeue()
    np.testing.assert_array_equal(a, x[3])
    assert b == 3 and q.size() == 1 and q.capacity == 5
    single = FIFOQueue(3, np.int64, ())
    single.enqueue(7)
    out = single.dequeue()
    assert isinstance(out, np.ndarray) and out == 7


def test_one_component_queue_takes_a_list_of_one_like_tf1():
    """TF1's enqueue takes a list or tuple of the components even when there is one: [x], (x,)
    and x store the same element (enqueue_many alike), while a list that is itself a valid
    element ([3.0, 4.0] of shape (2,), [4] for (None,)) stays the value. Planted bugs it
    catches: a list of one taken as the value (refused: shape (1,) for a scalar), or every
    list of one unwrapped ([4] and enqueue_many([15]) lose their axis)."""
    q = FIFOQueue(10, np.int64, ())
    q.enqueue([7])
    q.enqueue((8,))
    q.enqueue(9)
    q.enqueue_many([np.array([10, 11])])
    q.enqueue_many((np.array([12]),))
    q.enqueue_many([13, 14])
    q.enqueue_many([15])
    assert q.dequeue_many(9).tolist() == [7, 8, 9, 10, 11, 12, 13, 14, 15]
    vec = FIFOQueue(4, [np.float32], [(2,)])
    vec.enqueue([np.array([1, 2], np.float32)])
    vec.enqueue([3.0, 4.0])
    np.testing.assert_array_equal(vec.dequeue_many(2), [[1, 2], [3, 4]])
    text = FIFOQueue(3, [str], [()])
    text.enqueue(["hello"])
    text.enqueue(("world",))
    assert text.dequeue_many(2).tolist() == ["hello", "world"]
    pad = PaddingFIFOQueue(3, np.int64, (None,))
    pad.enqueue([[1, 2]])
    pad.enqueue([4])
    np.testing.assert_array_equal(pad.dequeue_many(2), [[1, 2], [4, 0]])
    one = (
        r"expected 1 component \(a value of shape \(\), or a list or tuple of 1\), got a list of 2"
    )
    with pytest.raises(ValueError, match=one):
        q.enqueue([1, 2])
    with pytest.raises(ValueError, match="expected a tuple of 2 components, got 3"):
        two_component().enqueue([np.zeros(2, np.float32), 1, 2])


def test_ring_buffer_wraps_in_fifo_order():
    q = FIFOQueue(5, np.int64, ())
    ref = []
    for i in range(7):
        q.enqueue_many(np.arange(3 * i, 3 * i + 3))
        ref += q.dequeue_many(3).tolist()
    assert ref == list(range(21))


def test_wrong_dtype_and_shape_name_expected_and_got():
    q = two_component()
    with pytest.raises(ValueError, match=r"expected shape \(2,\), got \(3,\)"):
        q.enqueue((np.zeros(3, np.float32), 1))
    with pytest.raises(ValueError, match="expected dtype float32, got float64"):
        q.enqueue((np.zeros(2, np.float64), 1))
    with pytest.raises(ValueError, match="expected dtype int64, got float64"):
        q.enqueue(([1.0, 2.0], 1.5))
    with pytest.raises(ValueError, match="tuple of 2 components"):
        q.enqueue(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="batch sizes differ"):
        q.enqueue_many((np.zeros((2, 2), np.float32), [1, 2, 3]))


def test_enqueue_blocks_while_full_until_a_dequeue():
    q = FIFOQueue(2, np.int64, ())
    q.enqueue_many([1, 2])
    t, box = in_thread(q.enqueue, 3)
    time.sleep(0.1)
    assert t.is_alive() and q.size() == 2
    assert q.dequeue() == 1
    t.join(2)
    assert not t.is_alive() and "error" not in box
    assert q.dequeue_many(2).tolist() == [2, 3]


def test_enqueue_many_inserts_element_by_element_beyond_capacity():
    q = FIFOQueue(3, np.int64, ())
    t, box = in_thread(q.enqueue_many, np.arange(10))
    got = [q.dequeue_many(2).tolist() for _ in range(5)]
    t.join(2)
    assert sum(got, []) == list(range(10)) and "error" not in box


def test_dequeue_blocks_while_empty_until_enqueue():
    q = FIFOQueue(3, np.int64, ())
    later(q.enqueue, 5)
    start = time.monotonic()
    assert q.dequeue(timeout=5) == 5
    assert time.monotonic() - start >= 0.05


def test_dequeue_many_blocks_until_n_are_there():
    q = FIFOQueue(10, np.int64, ())
    q.enqueue_many([1, 2])
    t, box = in_thread(q.dequeue_many, 4)
    time.sleep(0.1)
    assert t.is_alive()
    q.enqueue_many([3, 4])
    t.join(2)
    assert box["value"].tolist() == [1, 2, 3, 4]


def test_closed_queue_enqueue_is_cancelled():
    q = two_component()
    q.close()
    assert q.is_closed()
    with pytest.raises(CancelledError):
        q.enqueue((np.zeros(2, np.float32), 1))
    with pytest.raises(CancelledError):
        q.enqueue_many((np.zeros((1, 2), np.float32), [1]))


def test_closed_dequeue_drains_then_out_of_range():
    q = FIFOQueue(5, np.int64, ())
    q.enqueue_many([1, 2, 3])
    q.close()
    assert q.dequeue() == 1
    with pytest.raises(OutOfRangeError):
        q.dequeue_many(3)  # only 2 left: fails, and they stay
    assert q.size() == 2
    assert q.dequeue_many(2).tolist() == [2, 3]
    with pytest.raises(OutOfRangeError):
        q.dequeue()


def test_closed_dequeue_up_to_returns_the_rest_then_out_of_range():
    q = two_component(5)
    q.enqueue_many((np.ones((3, 2), np.float32), [1, 2, 3]))
    q.close()
    a, b = q.dequeue_up_to(2)
    assert b.tolist() == [1, 2]
    a, b = q.dequeue_up_to(5)
    assert b.tolist() == [3] and a.shape == (1, 2)
    with pytest.raises(OutOfRangeError):
        q.dequeue_up_to(5)


def test_dequeue_up_to_blocks_like_dequeue_many_while_open():
    q = FIFOQueue(5, np.int64, ())
    q.enqueue_many([1])
    t, box = in_thread(q.dequeue_up_to, 3)
    time.sleep(0.1)
    assert t.is_alive()
    q.close()  # now it can hand over what is left
    t.join(2)
    assert box["value"].tolist() == [1]


def test_close_fails_blocked_dequeues_that_cannot_be_satisfied():
    q = FIFOQueue(5, np.int64, ())
    q.enqueue(1)
    t1, box1 = in_thread(q.dequeue_many, 3)
    t2, box2 = in_thread(q.dequeue_many, 1)
    t2.join(2)
    assert box2["value"].tolist() == [1]
    time.sleep(0.05)
    later(q.close, delay=0.05)
    t1.join(2)
    assert isinstance(box1.get("error"), OutOfRangeError)


def test_close_lets_pending_enqueues_complete():
    q = FIFOQueue(1, np.int64, ())
    q.enqueue(1)
    t, box = in_thread(q.enqueue, 2)
    time.sleep(0.1)
    q.close()
    assert q.dequeue() == 1
    t.join(2)
    assert "error" not in box
    assert q.dequeue() == 2
    with pytest.raises(OutOfRangeError):
        q.dequeue()


def test_close_cancel_pending_enqueues():
    q = FIFOQueue(1, np.int64, ())
    q.enqueue(1)
    t, box = in_thread(q.enqueue_many, [2, 3])
    time.sleep(0.1)
    q.close(cancel_pending_enqueues=True)
    t.join(2)
    assert isinstance(box.get("error"), CancelledError)
    assert q.dequeue() == 1


def test_timeouts_per_call_and_default():
    q = FIFOQueue(1, np.int64, (), timeout=0.05)
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        q.dequeue()
    assert time.monotonic() - start < 2
    q.enqueue(1)
    with pytest.raises(DeadlineExceededError):
        q.enqueue(2)
    with pytest.raises(DeadlineExceededError):
        q.dequeue_many(2, timeout=0.01)
    assert q.size() == 1


def test_shuffle_queue_keeps_min_after_dequeue_while_open():
    q = RandomShuffleQueue(10, 3, np.int64, (), seed=0)
    q.enqueue_many([1, 2, 3])
    t, box = in_thread(q.dequeue)
    time.sleep(0.1)
    assert t.is_alive()  # size 3 <= min_after_dequeue
    q.enqueue(4)
    t.join(2)
    assert box["value"] in (1, 2, 3, 4) and q.size() == 3


def test_shuffle_queue_ignores_min_after_dequeue_after_close():
    q = RandomShuffleQueue(10, 5, np.int64, (), seed=0)
    q.enqueue_many(np.arange(4))
    q.close()
    got = q.dequeue_up_to(3).tolist() + q.dequeue_up_to(3).tolist()
    assert sorted(got) == [0, 1, 2, 3]
    with pytest.raises(OutOfRangeError):
        q.dequeue()


def test_shuffle_queue_is_seeded_and_returns_each_element_once():
    def run(seed):
        q = RandomShuffleQueue(64, 16, [np.int64, np.float32], [(), (3,)], seed=seed)
        q.enqueue_many((np.arange(200, 216), np.zeros((16, 3), np.float32)))
        out = []
        for i in range(10):
            q.enqueue_many((np.arange(20 * i, 20 * i + 20), np.zeros((20, 3), np.float32)))
            out += q.dequeue_many(20)[0].tolist()
        q.close()
        out += q.dequeue_up_to(100)[0].tolist()
        return out

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    assert sorted(a) == list(range(216)) and a[:200] != list(range(200))


def test_shuffle_queue_snapshot_restore_continues_identically():
    def fresh():
        return RandomShuffleQueue(30, 10, np.int64, (), seed=3)

    q = fresh()
    q.enqueue_many(np.arange(30))
    q.dequeue_many(20)
    ids, rng = q.snapshot(0)
    q.enqueue_many(np.arange(100, 110))  # enqueues after a dequeue do not enter the snapshot
    rest = [q.dequeue_many(5).tolist() for _ in range(2)]
    r = fresh()
    r.restore(ids, rng)
    r.enqueue_many(np.arange(100, 110))
    assert [r.dequeue_many(5).tolist() for _ in range(2)] == rest


def test_padding_queue_pads_none_dims_with_zeros_and_reports_lengths():
    q = PaddingFIFOQueue(5, [np.int32, np.float32], [(None, 2), ()], return_lengths=True)
    q.enqueue(([[1, 2]], 1.0))
    q.enqueue(([[3, 4], [5, 6], [7, 8]], 2.0))
    q.enqueue((np.zeros((0, 2), np.int32), 3.0))
    x, y, xlen, ylen = q.dequeue_many(3)
    ref = np.zeros((3, 3, 2), np.int32)
    ref[0, :1] = [[1, 2]]
    ref[1] = [[3, 4], [5, 6], [7, 8]]
    np.testing.assert_array_equal(x, ref)
    np.testing.assert_array_equal(y, [1, 2, 3])
    np.testing.assert_array_equal(xlen[:, 0], [1, 3, 0])
    assert ylen.shape == (3, 0)
    with pytest.raises(ValueError, match=r"expected shape \(None, 2\), got \(2, 3\)"):
        q.enqueue((np.zeros((2, 3), np.int32), 1.0))


def test_padding_queue_closed_up_to_pads_the_rest():
    q = PaddingFIFOQueue(5, np.int64, (None,))
    q.enqueue([1, 2, 3])
    q.enqueue([4])
    q.close()
    np.testing.assert_array_equal(q.dequeue_up_to(4), [[1, 2, 3], [4, 0, 0]])
    with pytest.raises(OutOfRangeError):
        q.dequeue_up_to(4)


def test_pick_from_oldest_output_ignores_how_far_producers_ran_ahead():
    def run(ahead):
        q = RandomShuffleQueue(100, 10, np.int64, (), seed=4, pick_from_oldest=True)
        out, fed = [], 0
        while len(out) < 60:
            want = min(100, len(out) + 15 + ahead)  # enqueue up to `ahead` beyond the window
            q.enqueue_many(np.arange(fed, max(fed, want)))
            fed = max(fed, want)
            out += q.dequeue_many(5).tolist()
        return out

    assert run(0) == run(30) == run(70)


def test_wait_until_free_blocks_until_the_block_fits():
    q = FIFOQueue(10, np.int64, ())
    q.enqueue_many(np.arange(8))
    t, box = in_thread(q.wait_until_free, 5)
    q.dequeue()
    time.sleep(0.1)
    assert t.is_alive()  # 3 free, 5 wanted
    q.dequeue_many(2)
    t.join(2)
    assert not t.is_alive() and "error" not in box
    with pytest.raises(DeadlineExceededError):
        q.wait_until_free(10, timeout=0.05)


TEXT_QUEUES = {
    "fifo": lambda d, s: FIFOQueue(10, dtypes=d, shapes=s),
    "shuffle": lambda d, s: RandomShuffleQueue(10, 0, dtypes=d, shapes=s, seed=0),
    "oldest": lambda d, s: RandomShuffleQueue(10, 1, d, s, seed=0, pick_from_oldest=True),
    "padding": lambda d, s: PaddingFIFOQueue(10, dtypes=d, shapes=s),
}
WORDS = {str: ["hello", "", "a much longer string", "é"], bytes: [b"hello\x00", b"", b"xyz" * 9]}


@pytest.mark.parametrize("make", TEXT_QUEUES.values(), ids=TEXT_QUEUES.keys())
@pytest.mark.parametrize("dtype", [str, bytes, "U4", "S2"])
def test_text_components_are_stored_whole(make, dtype):
    """Catches a queue of strings built the TF1 way (dtypes=[str], shapes=[()]) that cut
    every element to one character (numpy's fixed-width "U1" storage; "U4" to four)."""
    kind = bytes if np.dtype(dtype).kind == "S" else str
    words = WORDS[kind]
    q = make([dtype], [()])
    for w in words:
        q.enqueue(w)
    q.close()  # closed: min_after_dequeue no longer holds elements back
    got = q.dequeue_many(len(words))
    assert got.dtype == object and sorted(got.tolist()) == sorted(words)
    assert all(type(w) is kind for w in got)
    two = make([np.float32, dtype], [(2,), ()])  # enqueue_many, next to a numeric component
    two.enqueue_many((np.arange(2 * len(words), dtype=np.float32).reshape(-1, 2), words))
    two.close()
    x, y = two.dequeue_many(len(words))
    assert [words[int(r[0]) // 2] for r in x] == y.tolist()  # rows stay paired


def test_text_components_refuse_other_types_and_pad_with_empty_strings():
    with pytest.raises(ValueError, match="expected str elements, got int"):
        FIFOQueue(3, [str], [()]).enqueue(5)
    with pytest.raises(ValueError, match="expected bytes elements, got str"):
        FIFOQueue(3, [bytes], [()]).enqueue("text")
    q = PaddingFIFOQueue(4, [str], [(None,)], return_lengths=True)
    q.enqueue(["ab", "cde"])
    q.enqueue(["x"])
    words, lengths = q.dequeue_many(2)
    assert words.tolist() == [["ab", "cde"], ["x", ""]] and lengths.tolist() == [[2], [1]]


def test_shuffle_queue_timeout_held_by_min_after_dequeue_says_so():
    """Catches a DeadlineExceededError that gives only size and capacity when the dequeue
    waited because min_after_dequeue holds elements back (it must name the rule and counts)."""
    q = RandomShuffleQueue(10, 5, np.int64, (), seed=0)
    q.enqueue_many(np.arange(6))
    with pytest.raises(
        DeadlineExceededError, match=r"min_after_dequeue=5 .* dequeue of 3 needs 8 .* holds 6"
    ):
        q.dequeue_many(3, timeout=0.05)
    with pytest.raises(DeadlineExceededError) as empty:  # too few for n itself: no such claim
        RandomShuffleQueue(10, 5, np.int64, ()).dequeue(timeout=0.01)
    assert "min_after_dequeue" not in str(empty.value)
