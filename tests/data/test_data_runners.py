"""Coordinator and QueueRunner: end of data closes the queue, errors cancel and re-raise."""

import threading
import time

import numpy as np
import pytest

from hpcdist.data import Coordinator, FIFOQueue, QueueRunner
from hpcdist.errors import OutOfRangeError


def counting_source(stop: int):
    """An enqueue function factory: each call enqueues the next block of 5 until `stop`."""
    lock = threading.Lock()
    state = {"next": 0}

    def make(queue):
        def fn():
            with lock:
                start = state["next"]
                if start >= stop:
                    raise OutOfRangeError("end of data")
                state["next"] = start + 5
            queue.enqueue_many(np.arange(start, min(start + 5, stop)))

        return fn

    return make


def test_runner_closes_queue_when_all_threads_hit_the_end():
    q = FIFOQueue(8, np.int64, ())
    runner = QueueRunner(q, counting_source(103)(q), num_threads=3)
    coord = Coordinator()
    threads = runner.create_threads(coord)
    got = []
    with pytest.raises(OutOfRangeError):
        while True:
            got += q.dequeue_many(4).tolist()
    got += q.dequeue_up_to(4).tolist() if q.size() else []
    coord.request_stop()
    coord.join(threads, stop_grace_period_secs=5)
    assert sorted(got) == list(range(103))
    assert q.is_closed()


def test_runner_error_cancels_queue_and_join_reraises():
    q = FIFOQueue(2, np.int64, ())
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyError("bad record 7 in part-0.csv")
        q.enqueue(calls["n"])

    coord = Coordinator()
    threads = QueueRunner(q, [fn]).create_threads(coord)
    with pytest.raises(KeyError, match="part-0.csv"):
        coord.join(threads, stop_grace_period_secs=5)
    assert q.is_closed() and coord.should_stop()
    assert not any(t.is_alive() for t in threads)


def test_request_stop_cancels_blocked_enqueues():
    q = FIFOQueue(1, np.int64, ())
    coord = Coordinator()
    threads = QueueRunner(q, lambda: q.enqueue(1), num_threads=2).create_threads(coord)
    time.sleep(0.1)
    coord.request_stop()
    coord.join(threads, stop_grace_period_secs=5)
    assert not any(t.is_alive() for t in threads)


def test_coordinator_stop_on_exception_and_grace_period():
    coord = Coordinator()
    with coord.stop_on_exception():
        raise ValueError("boom")
    assert coord.should_stop()
    with pytest.raises(ValueError, match="boom"):
        coord.join([])
    coord.clear_stop()
    release = threading.Event()
    t = threading.Thread(target=release.wait, daemon=True)
    t.start()
    coord.register_thread(t)
    coord.request_stop()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="grace period"):
        coord.join(stop_grace_period_secs=0.2)
    assert time.monotonic() - start < 2
    release.set()
    t.join(2)


def test_runner_refuses_what_is_not_an_enqueue_function_at_once():
    """Catches a QueueRunner that takes a non-callable (the None `q.enqueue(1.0)` returns) and
    fails only at coord.join with "'NoneType' object is not callable"."""
    q = FIFOQueue(4, np.float32, ())
    with pytest.raises(TypeError, match=r"needs an enqueue function .* got NoneType None.*lambda"):
        QueueRunner(q, q.enqueue(1.0))
    with pytest.raises(TypeError, match=r"got float 2.0 as function 1"):
        QueueRunner(q, [lambda: None, 2.0])
