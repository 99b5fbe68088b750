"""Seed notes In [5]: filename queue -> line reader -> decode_csv -> shuffle queue -> batches.

python examples/seed/csv_shuffle_queue.py [DIR]

Differs from the notes on purpose: the third instance's missing x2 prints as its
record default, -1., where TF 1 printed garbage (-1.28134154e-20); the notes say
the default "should actually read -1". The shuffle is seeded, so the order is the
notes' one on every run.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from hpcdist.data import FIFOQueue, LineReader, RandomShuffleQueue, decode_csv
from hpcdist.errors import OutOfRangeError

SEED = 12  # gives the notes' order: [4., 5.] and [1., 2.] first


def write_test_csv(directory) -> str:
    path = Path(directory) / "my_test.csv"
    path.write_text("x1, x2 , target\n1., 2., 0\n4., 5 , 1\n7.,   , 0\n")
    return str(path)


def main(directory) -> None:
    reader = LineReader(skip_header_lines=1)
    filename_queue = FIFOQueue(capacity=10, dtypes=[str], shapes=[()])
    filename_queue.enqueue(write_test_csv(directory))  # the whole name, not its first letter
    filename_queue.close()
    instance_queue = RandomShuffleQueue(
        capacity=10,
        min_after_dequeue=2,
        dtypes=[np.float32, np.int32],
        shapes=[(2,), ()],
        seed=SEED,
    )
    try:
        while True:
            _, value = reader.read(filename_queue)
            x1, x2, target = decode_csv(value, record_defaults=[[-1.0], [-1.0], [-1]])
            instance_queue.enqueue((np.array([x1, x2], np.float32), target))
    except OutOfRangeError:
        print("No more files to read")
    instance_queue.close()
    try:
        while True:
            print(list(instance_queue.dequeue_up_to(2)))
    except OutOfRangeError:
        print("No more training instances")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(sys.argv[1] if len(sys.argv) > 1 else tmp)
