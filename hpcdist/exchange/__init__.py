"""Gradient exchange: the Exchange interface, AllreduceExchange, the flat API and broadcasts."""

from .allreduce import AllreduceExchange, AllreduceStats, AllreduceSyncInfo
from .base import Exchange, ExchangeStats, SyncInfo
from .broadcasts import Broadcaster, broadcast, broadcast_parameters
from .flat import Handle, allreduce, allreduce_async, grouped_allreduce, grouped_allreduce_async

__all__ = [
    "AllreduceExchange",
    "AllreduceStats",
    "AllreduceSyncInfo",
    "Broadcaster",
    "Exchange",
    "ExchangeStats",
    "Handle",
    "SyncInfo",
    "allreduce",
    "allreduce_async",
    "broadcast",
    "broadcast_parameters",
    "grouped_allreduce",
    "grouped_allreduce_async",
]
