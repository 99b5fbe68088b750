"""Exchanges by name: `--exchange NAME` picks one; a new algorithm registers itself here.

    from hpcdist.exchange import registry
    registry.names()                                  # ['allreduce', ...]
    ex = registry.create("allreduce", roles, config)  # cls.from_config(roles, config)

An entry is "module:Class"; the module is imported on first use, so naming
an exchange costs nothing until it is built. The class implements
hpcdist.exchange.base.Exchange and a classmethod
`from_config(roles, config) -> Exchange`, where `roles` is the run's
hpcdist.Cluster and `config` any object with the TrainConfig attributes it
reads.
"""

from __future__ import annotations

from importlib import import_module

_ENTRIES: dict[str, str] = {
    "allreduce": "hpcdist.exchange.allreduce:AllreduceExchange",
    "ps-sync": "hpcdist.ps.modes:PsSyncExchange",
    "ps-async": "hpcdist.ps.modes:PsAsyncExchange",
}


def register(name: str, target: str) -> None:
    """Make `name` build `target` ("package.module:Class")."""
    if not isinstance(name, str) or not name or ":" not in target:
        raise ValueError(f"register wants a name and 'module:Class', got {name!r}, {target!r}")
    _ENTRIES[name] = target


def names() -> list[str]:
    """The registered exchange names, in registration order."""
    return list(_ENTRIES)


def get(name: str):
    """The Exchange class registered as `name`."""
    if name not in _ENTRIES:
        raise ValueError(f"unknown exchange {name!r}; the exchanges are {names()}")
    module, _, cls = _ENTRIES[name].partition(":")
    return getattr(import_module(module), cls)


def create(name: str, roles, config):
    """Build exchange `name` for this rank's role in `roles`, from `config`'s settings."""
    return get(name).from_config(roles, config)
