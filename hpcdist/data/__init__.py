"""Input pipeline: TF1-style queues, readers, epoch plans and the sharded InputPipeline."""

from .padding import PaddingFIFOQueue
from .pipeline import InputPipeline, PipelineStats
from .plan import EpochPlan
from .queues import FIFOQueue, RandomShuffleQueue
from .runners import Coordinator, QueueRunner
from .sources import ArraySource, HDF5Source, RecordSource, read_manifest, write_manifest

__all__ = [
    "ArraySource",
    "Coordinator",
    "EpochPlan",
    "FIFOQueue",
    "HDF5Source",
    "InputPipeline",
    "PaddingFIFOQueue",
    "PipelineStats",
    "QueueRunner",
    "RandomShuffleQueue",
    "RecordSource",
    "read_manifest",
    "write_manifest",
]
