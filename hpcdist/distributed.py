"""DistributedOptimizer: a custom loop stays forward / backward / opt.step().

    model = nn.mlp([64, 64, 10], seed=0)
    opt = hpcdist.DistributedOptimizer(nn.Momentum(model.parameters(), lr=0.05))
    for x, y in pipe.epoch(epoch):
        loss, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits, input_grad=False)   # on_ready=opt.gradient_ready: overlap
        opt.step()                                  # exchange, then the local update

It wraps an hpcdist.nn optimizer (Horovod's DistributedOptimizer, in
hpcdist's terms): at construction it attaches the optimizer's parameters to
an exchange (an AllreduceExchange on `comm` unless one is given), so every
`param.grad` becomes a view into the exchange's buffers, and broadcasts rank
`root`'s parameters and optimizer state, so every rank starts equal. step()
exchanges the gradients and applies the update, skipping it when the exchange
says so (non-finite gradients with skip_nonfinite).
"""

from __future__ import annotations

from .exchange.base import Exchange


class DistributedOptimizer:
    """An optimizer whose step() first exchanges the gradients over the ranks."""

    def __init__(self, optimizer, exchange: Exchange | None = None, *, comm=None, root: int = 0):
        if exchange is None:
            from .exchange.allreduce import AllreduceExchange

            exchange = AllreduceExchange(comm)
        if exchange.updates == "parameters":
            raise ValueError(
                f"{type(exchange).__name__} applies the updates itself; train with it directly, "
                "without a DistributedOptimizer"
            )
        self.optimizer, self.exchange = optimizer, exchange
        self.params = optimizer.params
        exchange.attach(self.params)
        buffers = [a for slot in optimizer.slots for a in optimizer.state[slot]]
        exchange.broadcast_parameters([p.data for p in self.params] + buffers, root=root)
        self.last = None  # what the last exchange reported (SyncInfo)

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def gradient_ready(self, i: int) -> None:
        """Pass as model.backward(..., on_ready=opt.gradient_ready) to start buckets early."""
        self.exchange.gradient_ready(i)

    def step(self) -> bool:
        """Exchange the gradients, then update; False when the exchange skipped the step."""
        self.last = self.exchange.synchronize()
        if getattr(self.last, "skip", False):
            return False
        self.optimizer.step()
        return True

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def close(self) -> None:
        """Free the exchange's buffers and windows (collective)."""
        self.exchange.close()

    def __enter__(self) -> DistributedOptimizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
