"""Parameter servers: ps ranks hold sharded parameters and apply the optimizer (docs/ps.md)."""

from .modes import PsAsyncExchange, PsSyncExchange
from .remote import RemoteOptimizer
from .serving import serve
from .sharding import Piece, ShardPlan, shard_plan

__all__ = [
    "Piece",
    "PsAsyncExchange",
    "PsSyncExchange",
    "RemoteOptimizer",
    "ShardPlan",
    "serve",
    "shard_plan",
]
