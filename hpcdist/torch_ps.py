"""hpcdist.torch with a parameter-server exchange: the torch optimizer's update runs on the ps.

The ps tasks apply hpcdist.nn optimizers, so a torch optimizer is mapped to the
hpcdist.nn one with the same update and hyperparameters (torch.optim.SGD: SGD, or
Momentum with momentum/nesterov; torch.optim.Adam: Adam; weight_decay as torch's
L2 term in both); any other optimizer, or a setting the ps cannot apply
(dampening, maximize, amsgrad, decoupled weight decay, param_groups that differ),
is refused by name. The torch optimizer's state (momentum buffers, Adam moments
and step), where it has any, goes to the ps as root's starting state.
"""

from __future__ import annotations

import torch

from . import nn

#: torch settings the ps cannot apply: (optimizer, setting, the value the ps applies).
_UNSUPPORTED = {
    torch.optim.SGD: {"dampening": 0, "maximize": False},
    torch.optim.Adam: {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False},
}
_IGNORED = {"params", "foreach", "differentiable", "fused", "capturable", "initial_lr"}


def _group_settings(optimizer) -> dict:
    """The one set of hyperparameters of every param group, or a clear error."""
    groups = [{k: v for k, v in g.items() if k not in _IGNORED} for g in optimizer.param_groups]
    for i, g in enumerate(groups[1:], 1):
        for k in groups[0]:
            if g.get(k) != groups[0][k]:
                raise ValueError(
                    f"{type(optimizer).__name__}: param group {i} has {k}={g.get(k)!r}, group 0 "
                    f"{groups[0][k]!r}: a parameter server applies one set of settings to every "
                    "parameter"
                )
    return groups[0]


def ps_optimizer(optimizer, arrays: list, names: list) -> nn.Optimizer:
    """The hpcdist.nn optimizer over nn.Parameters wrapping `arrays` (the torch parameters'
    memory) that applies `optimizer`'s update, its state copied from the torch state."""
    kind = type(optimizer)
    if kind not in _UNSUPPORTED:  # exact types: AdamW, a subclass of Adam, updates otherwise
        raise ValueError(
            f"{kind.__module__}.{kind.__name__} cannot run on a parameter server: the ps tasks "
            "apply torch.optim.SGD (momentum, nesterov, weight_decay) and torch.optim.Adam "
            "(weight_decay); use one of those, or AllreduceExchange for any torch optimizer"
        )
    cfg = _group_settings(optimizer)
    for k, want in _UNSUPPORTED[kind].items():
        if cfg.get(k, want) != want:
            raise ValueError(
                f"torch.optim.{kind.__name__}({k}={cfg[k]!r}) cannot run on a parameter server "
                f"(the ps applies {k}={want!r})"
            )
    params = [nn.Parameter(n, a) for n, a in zip(names, arrays, strict=True)]
    lr, wd = float(cfg["lr"]), float(cfg["weight_decay"])
    if kind is torch.optim.Adam:
        betas = tuple(float(b) for b in cfg["betas"])
        local = nn.Adam(params, lr, betas=betas, eps=float(cfg["eps"]), weight_decay=wd)
    elif cfg["momentum"]:
        mu, nesterov = float(cfg["momentum"]), bool(cfg["nesterov"])
        local = nn.Momentum(params, lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
    else:
        local = nn.SGD(params, lr, weight_decay=wd)
    _copy_state(optimizer, local)
    return local


#: torch state entry -> hpcdist.nn slot.
_SLOTS = {"momentum_buffer": "velocity", "exp_avg": "m", "exp_avg_sq": "v"}


def _copy_state(optimizer, local) -> None:
    torch_params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    steps = set()
    for i, p in enumerate(torch_params):
        entry = optimizer.state.get(p, {})
        for key, slot in _SLOTS.items():
            if torch.is_tensor(entry.get(key)) and slot in local.state:
                local.state[slot][i][...] = entry[key].detach().numpy()
        if "step" in entry:
            steps.add(int(entry["step"]))
    if len(steps) > 1:
        raise ValueError(
            f"{type(optimizer).__name__}'s parameters have taken different numbers of steps "
            f"({sorted(steps)}); the ps keeps one step count"
        )
    local.steps = steps.pop() if steps else 0


def lr_of(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def check_lr(optimizer, applied: float) -> None:
    """The ps applies the lr set at construction: a changed lr (an lr scheduler) is refused."""
    now = lr_of(optimizer)
    if now != applied:
        raise ValueError(
            f"the torch optimizer's lr changed to {now!r}; the parameter server applies the lr "
            f"given at construction ({applied!r}): lr schedules are not passed to the ps"
        )
