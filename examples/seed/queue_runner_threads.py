"""Seed notes In [6]: five threads of a QueueRunner, each reading lines into the shuffle queue.

python examples/seed/queue_runner_threads.py

Differs from the notes on purpose: the missing x2 is its record default, -1.
(TF 1 printed garbage). Which thread reads which line varies from run to run,
so the batches are the notes' instances, not always in the notes' order.
"""

import tempfile

import numpy as np
from csv_shuffle_queue import write_test_csv

from hpcdist.data import (
    Coordinator,
    FIFOQueue,
    LineReader,
    QueueRunner,
    RandomShuffleQueue,
    decode_csv,
)
from hpcdist.errors import OutOfRangeError


def read_and_push_instance(filename_queue, instance_queue, reader):
    """An enqueue function for the runner: one line read, decoded and enqueued per call."""

    def enqueue():
        _, value = reader.read(filename_queue)  # OutOfRangeError ends this thread
        x1, x2, target = decode_csv(value, record_defaults=[[-1.0], [-1.0], [-1]])
        instance_queue.enqueue((np.array([x1, x2], np.float32), target))

    return enqueue


def main(directory) -> None:
    filename_queue = FIFOQueue(capacity=10, dtypes=[str], shapes=[()])
    filename_queue.enqueue(write_test_csv(directory))
    filename_queue.close()
    instance_queue = RandomShuffleQueue(
        capacity=10,
        min_after_dequeue=2,
        dtypes=[np.float32, np.int32],
        shapes=[(2,), ()],
        seed=12,
    )
    reader = LineReader(skip_header_lines=1)  # one reader: each line is read once
    ops = [read_and_push_instance(filename_queue, instance_queue, reader) for _ in range(5)]
    runner = QueueRunner(instance_queue, ops)  # closes the queue when every thread is done
    coord = Coordinator()
    threads = runner.create_threads(coord, start=True)
    try:
        while True:
            print(list(instance_queue.dequeue_up_to(2)))
    except OutOfRangeError:
        print("No more training instances")
    coord.request_stop()
    coord.join(threads)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(tmp)
