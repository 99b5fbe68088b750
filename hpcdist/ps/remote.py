"""RemoteOptimizer: the trainer's handle on an optimizer whose state lives on the ps tasks.

It looks like the hpcdist.nn optimizer it wraps (lr, hyper-parameters,
state_dict, load_state_dict), so checkpoints keep the usual `optimizer/`
layout whichever exchange wrote them: state_dict() gathers the slots from
every ps task into whole arrays, load_state_dict() sends them back (on the
next synchronize). step() is refused: the ps applies the update.
"""

from __future__ import annotations


class RemoteOptimizer:
    """Proxy of `local` (an hpcdist.nn Optimizer used as the mirror of the ps state)."""

    def __init__(self, local, exchange):
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "exchange", exchange)

    @property
    def params(self):
        return self.local.params

    @property
    def lr(self) -> float:
        """The lr the ps applied last (the schedule at the global step)."""
        return self.exchange.current_lr()

    @lr.setter
    def lr(self, value: float) -> None:  # the schedule sets it; the ps computes its own
        self.local.lr = float(value)

    def __getattr__(self, name: str):
        return getattr(self.local, name)

    def __setattr__(self, name: str, value) -> None:
        if name in type(self.local).hyper:
            setattr(self.local, name, value)
            self.exchange.mark_dirty()  # a changed setting goes to the ps with the state
        else:
            object.__setattr__(self, name, value)

    def step(self) -> None:
        raise TypeError("the parameter servers apply the update: do not step a RemoteOptimizer")

    def state_dict(self) -> dict:
        """The whole optimizer state, gathered from the ps tasks (same keys as `local`'s)."""
        self.exchange.fetch_optimizer_state(self.local)
        return self.local.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Load `state`; the ps tasks get it (and the parameters) before the next step."""
        self.local.load_state_dict(state)
        self.exchange.mark_dirty()
