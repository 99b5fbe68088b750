"""Seed notes In [8]: a FIFOQueue with a 1 s timeout on every operation.

python examples/seed/queue_timeout.py

The notes' `feed_dict={dequeue: 5}` replaces the dequeued value by 5 without
dequeuing: here that is simply computing with 5.
"""

import numpy as np

from hpcdist.data import FIFOQueue
from hpcdist.errors import DeadlineExceededError

q = FIFOQueue(capacity=10, dtypes=[np.float32], shapes=[()], timeout=1.0)  # 1 s for each op
for v in (1.0, 2.0, 3.0):
    q.enqueue(v)
print(q.dequeue() + 1)  # 2.0 (from enqueued 1)
print(np.float32(5) + 1)  # 6.0: the value fed in place of a dequeue
print(q.dequeue() + 1)  # 3.0 (from enqueued 2)
print(q.dequeue() + 1)  # 4.0 (from enqueued 3)
try:
    print(q.dequeue() + 1)  # the queue is empty: waits 1 s, then
except DeadlineExceededError:
    print("Timed out while dequeuing.")
