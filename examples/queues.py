"""The seed's queue chapter: reader threads fill a shuffle queue, the trainer dequeues batches.

python examples/queues.py
"""

import numpy as np

from hpcdist.data import Coordinator, QueueRunner, RandomShuffleQueue
from hpcdist.errors import OutOfRangeError

records = np.arange(100, dtype=np.float32).reshape(50, 2)  # 50 "instances" of 2 features
labels = np.arange(50, dtype=np.int64)
# capacity must exceed min_after_dequeue + the batch, or dequeues wait for ever (as in TF)
queue = RandomShuffleQueue(
    capacity=40, min_after_dequeue=5, dtypes=[np.float32, np.int64], shapes=[(2,), ()], seed=42
)
parts = iter(np.array_split(np.arange(50), 5))  # five "files"


def read_one_file():
    rows = next(parts, None)
    if rows is None:
        raise OutOfRangeError("no more files")  # the runner closes the queue when all are done
    queue.enqueue_many((records[rows], labels[rows]))


coord = Coordinator()
threads = QueueRunner(queue, read_one_file, num_threads=2).create_threads(coord, start=True)
seen = []
try:
    while True:
        x, y = queue.dequeue_up_to(16)  # the last batch may be short; then OutOfRangeError
        seen.extend(y.tolist())
        print(f"batch of {len(y):2d}: labels {y.tolist()}")
except OutOfRangeError:
    print(
        f"queue closed and empty: {len(seen)} records, each once: {sorted(seen) == list(range(50))}"
    )
coord.request_stop()
coord.join(threads)
