"""hpcdist.torch: a torch.nn.Module trained over MPI, its gradients in the exchange's buffers.

    import torch, hpcdist, hpcdist.torch as hdt
    hpcdist.init()
    model = Net()
    opt = hdt.DistributedOptimizer(torch.optim.Adam(model.parameters(), 1e-3), model=model)
    for x, y in batches:
        opt.zero_grad()                   # zeroes the exchange's buffers in place
        loss_fn(model(x), y).backward()   # each finished gradient starts its bucket
        opt.step()                        # wait for the average, then torch's update

At construction the optimizer's parameters are attached to an exchange (an
AllreduceExchange on `comm` unless one is given). Every `param.grad` becomes a
zero-copy tensor over the exchange's numpy view (`torch.from_numpy`), so
autograd accumulates straight into the buffers the exchange reduces, and a
post-accumulate-grad hook on each parameter calls `exchange.gradient_ready(i)`
as backward finishes with it: buckets start during backward, in the order
backward produces them. Then rank `root`'s state dict (parameters and buffers)
and optimizer state are broadcast in place: the optimizer's own tensors, no
fake step (Horovod's zero-gradient step changes Adam's moments).

With an exchange that applies the updates itself (`updates` "parameters": the
parameter server, ps-sync or ps-async) the torch optimizer is mapped to the
hpcdist.nn optimizer the ps tasks run (torch_ps.py: SGD with momentum/nesterov/
weight_decay, Adam; others refused by name): step() pushes the gradients, the ps
applies the update, the fresh parameters are pulled into the torch parameters in
place; torch's own step() is not called. state_dict() is then the ps state in
hpcdist.nn's layout, and a changed lr is refused (the ps applies the lr it got).

Rules: CPU tensors (torch's device gradients would be staged copies; see
docs/models.md), one backward per step() (or several inside `no_sync()`), and
`zero_grad()` zeroes in place: torch's `set_to_none` would drop the buffers
(a gradient found outside its buffer is copied in, slower but still right).
"""

from __future__ import annotations

import contextlib

import numpy as np

from .exchange.broadcasts import broadcast_into
from .guard import Guard

try:
    import torch
except ImportError as exc:  # torch is optional: fail here, at the point of use
    raise ImportError(
        "hpcdist.torch needs PyTorch (pip install torch); the rest of hpcdist works without it"
    ) from exc

__all__ = ["DistributedOptimizer", "broadcast_optimizer_state", "broadcast_state_dict"]

#: torch dtypes numpy has no type for, moved as same-size integers.
_AS_INTEGER = {torch.bfloat16: torch.int16}


def _numpy_view(t: torch.Tensor, what: str) -> np.ndarray:
    """A numpy array sharing memory with CPU tensor t (any dtype), or a clear error."""
    if t.device.type != "cpu":
        raise ValueError(
            f"{what} is on {t.device}: hpcdist.torch exchanges CPU tensors; move the model "
            "to the CPU or use torch.distributed with NCCL for device tensors"
        )
    if not t.is_contiguous():
        raise ValueError(f"{what} is not contiguous; call .contiguous() on it first")
    t = t.detach()
    return t.view(_AS_INTEGER[t.dtype]).numpy() if t.dtype in _AS_INTEGER else t.numpy()


def _tensor_list(tensors: list, what: str) -> tuple[list, list]:
    """(numpy views, copies to write back) for in-place broadcasts of `tensors`."""
    arrays, back = [], []
    for name, t in tensors:
        if t.is_contiguous():
            arrays.append(_numpy_view(t, f"{what} {name}"))
        else:  # a strided view: broadcast a contiguous copy, then copy it back
            c = t.detach().contiguous()
            arrays.append(_numpy_view(c, f"{what} {name}"))
            back.append((t, c))
    return arrays, back


def _broadcast_tensors(tensors: list, what: str, root: int, comm, exchange, timeout) -> None:
    arrays, back = _tensor_list(tensors, what)
    if exchange is not None:
        exchange.broadcast_parameters(arrays, root=root)
    else:
        broadcast_into(arrays, root, comm, timeout)
    with torch.no_grad():
        for t, c in back:
            t.copy_(c)


def broadcast_state_dict(
    module: torch.nn.Module, root: int = 0, comm=None, *, exchange=None, timeout=None
) -> None:
    """Overwrite `module`'s parameters and buffers in place with rank `root`'s (collective).

    Over `exchange`'s communicator when one is given, else over `comm` (None: the world).
    Every rank must hold the same architecture; a mismatch raises on every rank.
    """
    items = sorted(module.state_dict(keep_vars=True).items())
    _broadcast_tensors(items, "state dict entry", root, comm, exchange, timeout)


def broadcast_optimizer_state(
    optimizer: torch.optim.Optimizer, root: int = 0, comm=None, *, exchange=None, timeout=None
) -> None:
    """Give every rank rank `root`'s optimizer state and hyperparameters, in place (collective).

    Root sends the state's layout (which parameters have which buffers, their
    shapes and dtypes, scalar entries, param_groups); the others load that
    layout (state torch has not created yet, e.g. before Adam's first step,
    is created as zeros), then every state tensor is broadcast in place.
    No optimizer step is taken.
    """
    comm = comm if comm is not None else getattr(exchange, "comm", None)
    guard = Guard(comm, timeout, name="optimizer state")
    rank = guard.rank
    try:
        mine = _layout(optimizer) if rank == root else None
        layout = guard.bcast(mine, root=root, what=f"the optimizer state's layout from rank {root}")
    finally:
        guard.free()
    if rank != root:
        optimizer.load_state_dict(_from_layout(optimizer, layout))
    _broadcast_tensors(_state_tensors(optimizer), "optimizer state", root, comm, exchange, timeout)


def _layout(optimizer) -> dict:
    sd = optimizer.state_dict()
    state = {
        i: {
            k: ("tensor", tuple(v.shape), str(v.dtype)) if torch.is_tensor(v) else ("value", v)
            for k, v in entry.items()
        }
        for i, entry in sd["state"].items()
    }
    return {"state": state, "param_groups": sd["param_groups"]}


def _from_layout(optimizer, layout: dict) -> dict:
    """A state dict with root's layout: zeros where root has tensors, root's other values."""
    state = {}
    for i, entry in layout["state"].items():
        state[i] = {}
        for k, (kind, *rest) in entry.items():
            if kind == "tensor":
                shape, dtype = rest
                state[i][k] = torch.zeros(shape, dtype=getattr(torch, dtype.split(".")[-1]))
            else:
                state[i][k] = rest[0]
    return {"state": state, "param_groups": layout["param_groups"]}


def _state_tensors(optimizer) -> list:
    """(name, tensor) for every state tensor, in param_groups order then key order."""
    out, index = [], 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            entry = optimizer.state.get(p, {})
            out += [(f"{index}.{k}", entry[k]) for k in sorted(entry) if torch.is_tensor(entry[k])]
            index += 1
    return out


class DistributedOptimizer:
    """A torch optimizer whose gradients are averaged over the ranks during backward."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        model: torch.nn.Module | None = None,
        exchange=None,
        comm=None,
        root: int = 0,
        overlap: bool = True,
        steps_per_epoch: int | None = None,
    ):
        params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        arrays = [_numpy_view(p, f"parameter {i}") for i, p in enumerate(params)]  # checks first
        if exchange is None:
            from .exchange.allreduce import AllreduceExchange

            exchange = AllreduceExchange(comm)
        if exchange.updates not in ("gradients", "parameters"):
            raise ValueError(
                f"{type(exchange).__name__} updates {exchange.updates!r}: hpcdist.torch needs an "
                "exchange that hands back averaged gradients (AllreduceExchange) or a parameter "
                "server that applies the update (ps-sync, ps-async)"
            )
        self.optimizer, self.exchange, self.overlap = optimizer, exchange, overlap
        self.params, self.remote = params, None
        if exchange.updates == "parameters":
            views = self._attach_ps(arrays, model, root, steps_per_epoch)
        else:
            views = exchange.attach(arrays)  # collective; a mismatch of shapes raises everywhere
        self.grads = [torch.from_numpy(v) for v in views]  # zero-copy: the exchange's memory
        with torch.no_grad():
            for p, g in zip(self.params, self.grads, strict=True):
                g.zero_()
                p.grad = g
        self._ready: set[int] = set()
        self._sync = True
        self._hooks = [
            p.register_post_accumulate_grad_hook(self._hook(i)) for i, p in enumerate(self.params)
        ]
        if self.remote is None:
            if model is not None:
                broadcast_state_dict(model, root, exchange=exchange)
            else:
                items = [(str(i), p) for i, p in enumerate(self.params)]
                _broadcast_tensors(items, "parameter", root, None, exchange, None)
            broadcast_optimizer_state(optimizer, root, comm, exchange=exchange)
        self.last = None  # what the last exchange reported (SyncInfo)

    def _attach_ps(self, arrays, model, root, steps_per_epoch) -> list:
        """Attach to the ps exchange, give it root's parameters and buffers, bind the mapped
        optimizer (collective over the workers); the gradient views."""
        from . import torch_ps
        from .nn import ConstantLR

        ids = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
        names = [ids.get(id(p), str(i)) for i, p in enumerate(self.params)]
        local = torch_ps.ps_optimizer(self.optimizer, arrays, names)  # refusals come first
        views = self.exchange.attach(local.params)  # binds local's .grad to the views
        if model is not None:  # buffers (and parameters) among the workers, then root's to the ps
            broadcast_state_dict(model, root, exchange=self.exchange)
        self.exchange.broadcast_parameters([p.data for p in local.params], root=root)
        self.lr = torch_ps.lr_of(self.optimizer)
        self.remote = self.exchange.bind_optimizer(local, ConstantLR(self.lr), steps_per_epoch)
        return views

    def _hook(self, i: int):
        def ready(p: torch.Tensor) -> None:
            g = self.grads[i]
            if p.grad.data_ptr() != g.data_ptr():  # set_to_none or replaced: copy in, rebind
                with torch.no_grad():
                    g.copy_(p.grad)
                p.grad = g
            if not self._sync:
                return
            if i in self._ready:
                raise RuntimeError(
                    f"parameter {i} got a second gradient before step(): call step() after "
                    "each backward, or run the earlier backward passes inside opt.no_sync()"
                )
            self._ready.add(i)
            if self.overlap:
                self.exchange.gradient_ready(i)

        return ready

    @property
    def param_groups(self) -> list:
        return self.optimizer.param_groups

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside accumulate into the buffers without exchanging (as DDP's)."""
        self._sync = False
        try:
            yield
        finally:
            self._sync = True

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every gradient in place (its buffer stays); set_to_none is refused."""
        if set_to_none:
            raise ValueError("zero_grad(set_to_none=True) would drop the exchange's buffers")
        with torch.no_grad():
            for p, g in zip(self.params, self.grads, strict=True):
                g.zero_()
                p.grad = g

    def synchronize(self):
        """Finish the exchange: every gradient now holds the average over the ranks."""
        self.last = self.exchange.synchronize()
        self._ready.clear()
        return self.last

    def step(self, closure=None) -> bool:
        """Exchange, then torch's update; False when the exchange skipped the step."""
        if closure is not None:
            raise ValueError("closures are not supported: run forward/backward, then step()")
        if self.remote is not None:
            from .torch_ps import check_lr

            check_lr(self.optimizer, self.lr)
        info = self.synchronize()  # with a ps: the parameters are the ps's new ones now
        if getattr(info, "skip", False):
            return False
        if self.remote is None:
            self.optimizer.step()
        return True

    def state_dict(self) -> dict:
        """torch's optimizer state; with a ps, the ps state in hpcdist.nn's layout."""
        return (self.remote or self.optimizer).state_dict()

    def load_state_dict(self, state: dict) -> None:
        (self.remote or self.optimizer).load_state_dict(state)

    def close(self) -> None:
        """Remove the hooks and free the exchange (collective)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.exchange.close()

    def __enter__(self) -> DistributedOptimizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
