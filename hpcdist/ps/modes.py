"""The two parameter-server exchanges: "ps-sync" (sync.py's rule) and "ps-async" (staleness.py's).

    ex = PsSyncExchange(roles, replicas_to_aggregate=5, compression="bf16", timeout=60)
    ex = PsAsyncExchange(roles, staleness=2, staleness_policy="dc", warmup=100)

Both are PsExchange (exchange.py) with a rule for the ps side; ps-async also
pushes in two phases (ps task 0 first, for the sequence number) and waits for
task 0's permission to go on.
"""

from __future__ import annotations

from .exchange import PsExchange
from .staleness import AsyncRule
from .sync import SyncRule


class PsSyncExchange(PsExchange):
    """ps-sync: the first `replicas_to_aggregate` gradients of each step (sync.py)."""

    def __init__(self, roles, *, replicas_to_aggregate: int | None = None, **kw):
        super().__init__(roles, **kw)
        self.replicas_to_aggregate = replicas_to_aggregate or None

    def make_rule(self):
        return SyncRule(self.replicas_to_aggregate, record=self.record)

    @classmethod
    def from_config(cls, roles, config) -> PsSyncExchange:
        return cls(
            roles,
            replicas_to_aggregate=getattr(config, "replicas_to_aggregate", 0),
            **_common(config),
        )


class PsAsyncExchange(PsExchange):
    """ps-async: each gradient applied as it comes, staleness bounded (staleness.py)."""

    def __init__(
        self, roles, *, staleness: int = 4, staleness_policy: str = "none", warmup: int = 0, **kw
    ):
        super().__init__(roles, **kw)
        self.staleness, self.staleness_policy, self.warmup = staleness, staleness_policy, warmup
        AsyncRule(staleness, staleness_policy, warmup=warmup)  # bad settings fail on every rank

    def make_rule(self):
        return AsyncRule(
            self.staleness, self.staleness_policy, warmup=self.warmup, record=self.record
        )

    def _remaining(self) -> int:
        """Async parks only at an epoch's end: a worker in the pre-emption check holds no
        one (the slowest is always let go)."""
        spe = self.steps_per_epoch
        return spe - 1 - self.pushes % spe if spe else 1

    def _push(self, **header) -> int:
        """ps task 0 first (its answer is this gradient's sequence number, and whether the
        warm-up dropped it), then the others with that number and mark; then wait for task
        0's permission (the staleness bound)."""
        c, kw = self.client, dict(samples=self.samples_per_step, **header)
        go = c.post_go()
        version = c.push_pull(self.grads, self.params, self.version, tasks=[0], **kw)
        if len(self.ps_ranks) > 1:
            rest = range(1, len(self.ps_ranks))
            mark = c.reply_flags(0)
            c.push_pull(
                self.grads, self.params, self.version, seq=version - 1, flags=mark, tasks=rest, **kw
            )
        c.wait([go], "ps task(s) {} to let this worker go on (the staleness bound)", [0])
        pull = c.go.get("version")
        return c.pull(self.params, version=pull) if pull >= 0 else version

    @classmethod
    def from_config(cls, roles, config) -> PsAsyncExchange:
        return cls(
            roles,
            staleness=getattr(config, "staleness", 4),
            staleness_policy=getattr(config, "staleness_policy", "none"),
            warmup=getattr(config, "async_warmup", 0),
            **_common(config),
        )


def _common(config) -> dict:
    return {
        "compression": config.compression,
        "sharding": getattr(config, "sharding", "greedy"),
        "samples_per_step": config.batch_size,
        "timeout": getattr(config, "timeout", None),
        "log_placement": getattr(config, "log_device_placement", False),
    }
