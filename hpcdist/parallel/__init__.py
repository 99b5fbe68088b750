"""Model parallelism: tensor-parallel Dense layers, pipeline stages and schedules, 2-D layouts.

from hpcdist import parallel
part = parallel.tensor_split(net, guard)                       # units over the group
part = parallel.PipelineModel(net, guard, micro_batches=4)    # layers over the group
parallel.compare(net, part, x, y, guard).raise_if_failed()   # the equivalence harness
"""

from . import checkpoints
from .chain import Chain, Piece
from .equivalence import Difference, EquivalenceError, EquivalenceReport, compare
from .exchange import ModelParallelExchange, split_for_training
from .layout import Layout2D
from .pipeline import PipelineModel, stage_bounds
from .play import bubble, check, peak_activations, play
from .schedules import SCHEDULES, Action, Op, ScheduleError
from .schedules import build as build_schedule
from .tensor import ColumnParallelDense, RowParallelDense, SlicedDropout, split_range, split_sizes
from .tensor import split as tensor_split

__all__ = [
    "SCHEDULES",
    "Action",
    "Chain",
    "ColumnParallelDense",
    "Difference",
    "EquivalenceError",
    "EquivalenceReport",
    "Layout2D",
    "ModelParallelExchange",
    "Op",
    "Piece",
    "PipelineModel",
    "RowParallelDense",
    "ScheduleError",
    "SlicedDropout",
    "bubble",
    "checkpoints",
    "build_schedule",
    "check",
    "compare",
    "peak_activations",
    "play",
    "split_range",
    "split_for_training",
    "split_sizes",
    "stage_bounds",
    "tensor_split",
]
