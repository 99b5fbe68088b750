"""Coordinator (stop, join, re-raise) and QueueRunner (threads that fill a queue)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable

from ..errors import CancelledError, OutOfRangeError


class Coordinator:
    """Lets threads ask each other to stop, and hands their exceptions to join().

    `request_stop(ex)` records the first exception; `join()` waits for the
    registered threads, gives them `stop_grace_period_secs` after a stop was
    requested, and re-raises that exception in the joining thread.
    """

    def __init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._exc_info = None
        self._threads: list[threading.Thread] = []

    def request_stop(self, ex: BaseException | None = None) -> None:
        """Ask every thread to stop; the first exception given is kept for join()."""
        with self._lock:
            if ex is not None and self._exc_info is None and not isinstance(ex, OutOfRangeError):
                self._exc_info = (type(ex), ex, ex.__traceback__)
            self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def clear_stop(self) -> None:
        with self._lock:
            self._stop.clear()
            self._exc_info = None

    @contextlib.contextmanager
    def stop_on_exception(self):
        """Turn an exception in the block into request_stop(ex); OutOfRange just stops."""
        try:
            yield
        except OutOfRangeError:
            self.request_stop()
        except Exception as ex:  # noqa: BLE001 - handed to join()
            self.request_stop(ex)

    def register_thread(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.append(thread)

    def raise_requested_exception(self) -> None:
        with self._lock:
            info = self._exc_info
        if info is not None:
            raise info[1].with_traceback(info[2])

    def join(self, threads=None, stop_grace_period_secs: float = 120.0) -> None:
        """Wait for the threads; re-raise the first exception any of them reported.

        Returns when every thread has ended. Once a stop is requested, threads
        still alive after the grace period raise RuntimeError naming them.
        """
        with self._lock:
            threads = list(self._threads) + [t for t in (threads or []) if t not in self._threads]
        while any(t.is_alive() for t in threads) and not self._stop.wait(0.05):
            pass
        deadline = time.monotonic() + stop_grace_period_secs
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.raise_requested_exception()
        stragglers = [t.name for t in threads if t.is_alive()]
        if stragglers:
            raise RuntimeError(f"threads did not stop within the grace period: {stragglers}")


class QueueRunner:
    """Runs enqueue functions in threads until the data ends or something fails.

    `enqueue_fn` is called over and over (one function for `num_threads`
    threads, or a list with one function per thread). A function signals
    the end of its data by raising OutOfRangeError (or StopIteration); when
    every thread has ended that way the queue is closed, so consumers drain
    what is left and then see OutOfRangeError. Any other exception closes the
    queue with cancel_pending_enqueues=True and is passed to the Coordinator.
    """

    def __init__(self, queue, enqueue_fn: Callable | list[Callable], num_threads: int = 1):
        fns = (
            list(enqueue_fn)
            if isinstance(enqueue_fn, (list, tuple))
            else [enqueue_fn] * num_threads
        )
        if not fns:
            raise ValueError("QueueRunner needs at least one enqueue function")
        for i, fn in enumerate(fns):
            if not callable(fn):
                raise TypeError(
                    f"QueueRunner needs an enqueue function (called with no arguments, over "
                    f"and over), got {type(fn).__name__} {fn!r}"
                    + (f" as function {i}" if len(fns) > 1 else "")
                    + ("; pass `lambda: q.enqueue(x)`, not `q.enqueue(x)`" if fn is None else "")
                )
        self.queue = queue
        self._fns = fns
        self._lock = threading.Lock()
        self._running = 0
        self.exceptions: list[BaseException] = []

    def create_threads(
        self, coord: Coordinator | None = None, daemon: bool = True, start: bool = True
    ) -> list[threading.Thread]:
        """Start (with start=True) one thread per enqueue function, plus one that cancels the queue.

        `coord`: the Coordinator that stops the threads and collects their
        exceptions (a new one when None); `daemon`: whether the threads are
        daemon threads; `start`: start them now (else call `.start()` on
        each). Returns every thread made, the canceller last; each is
        registered with `coord`, so `coord.join(threads)` waits for them.
        """
        coord = coord or Coordinator()
        self._running = len(self._fns)
        threads = [
            threading.Thread(
                target=self._run,
                args=(coord, fn),
                daemon=daemon,
                name=f"QueueRunner-{self.queue.name}-{i}",
            )
            for i, fn in enumerate(self._fns)
        ]
        threads.append(
            threading.Thread(
                target=self._close_on_stop,
                args=(coord,),
                daemon=daemon,
                name=f"QueueRunner-{self.queue.name}-close",
            )
        )
        for t in threads:
            coord.register_thread(t)
            if start:
                t.start()
        return threads

    def _run(self, coord: Coordinator, fn: Callable) -> None:
        try:
            while not coord.should_stop():
                fn()
        except (OutOfRangeError, StopIteration):
            pass
        except CancelledError:  # the queue was closed under us: a normal end
            pass
        except Exception as ex:  # noqa: BLE001 - reported through the Coordinator
            self.exceptions.append(ex)
            coord.request_stop(ex)  # before close, so a consumer that sees the close finds it
            self.queue.close(cancel_pending_enqueues=True)
        except BaseException:
            coord.request_stop(RuntimeError(f"enqueue thread ended: {sys.exc_info()[0]}"))
            self.queue.close(cancel_pending_enqueues=True)
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self.queue.close()

    def _close_on_stop(self, coord: Coordinator) -> None:
        while not coord.wait_for_stop(0.05):
            with self._lock:
                if self._running == 0:
                    return
        self.queue.close(cancel_pending_enqueues=True)
