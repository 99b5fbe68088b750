"""Input pipeline: TF1-style queues, readers, epoch plans and the sharded InputPipeline."""

from .lines import LineReader, decode_csv, filename_queue
from .padding import PaddingFIFOQueue
from .pipeline import InputPipeline, PipelineStats
from .plan import EpochPlan
from .queues import FIFOQueue, RandomShuffleQueue
from .readers import CSVReader, ReadStats, RecordKey
from .runners import Coordinator, QueueRunner
from .sources import ArraySource, HDF5Source, RecordSource, read_manifest, write_manifest

__all__ = [
    "ArraySource",
    "CSVReader",
    "Coordinator",
    "EpochPlan",
    "FIFOQueue",
    "HDF5Source",
    "InputPipeline",
    "LineReader",
    "PaddingFIFOQueue",
    "PipelineStats",
    "QueueRunner",
    "RandomShuffleQueue",
    "ReadStats",
    "RecordKey",
    "RecordSource",
    "decode_csv",
    "filename_queue",
    "read_manifest",
    "write_manifest",
]
