"""Input pipeline: TF1-style queues, readers, epoch plans and the sharded InputPipeline."""

from .queues import FIFOQueue, PaddingFIFOQueue, RandomShuffleQueue
from .runners import Coordinator, QueueRunner

__all__ = [
    "Coordinator",
    "FIFOQueue",
    "PaddingFIFOQueue",
    "QueueRunner",
    "RandomShuffleQueue",
]
