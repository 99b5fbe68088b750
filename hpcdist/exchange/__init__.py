"""Gradient exchange: the Exchange interface, AllreduceExchange and the flat allreduce API."""

from .allreduce import AllreduceExchange
from .base import Exchange, ExchangeStats, SyncInfo
from .flat import (
    Handle,
    allreduce,
    allreduce_async,
    broadcast,
    broadcast_parameters,
    grouped_allreduce,
    grouped_allreduce_async,
)

__all__ = [
    "AllreduceExchange",
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
