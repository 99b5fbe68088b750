"""The parts a TrainConfig names: the data set and its pipelines, the MLP, the optimizer, the lr."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import datasets, nn
from .data import HDF5Source, InputPipeline

#: Optimizers by name: (parameters, config) -> hpcdist.nn.Optimizer.
OPTIMIZERS = {
    "sgd": lambda p, c: nn.SGD(p, c.lr, weight_decay=c.weight_decay),
    "momentum": lambda p, c: nn.Momentum(p, c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
    "nesterov": lambda p, c: nn.Momentum(
        p, c.lr, momentum=c.momentum, nesterov=True, weight_decay=c.weight_decay
    ),
    "adam": lambda p, c: nn.Adam(p, c.lr, weight_decay=c.weight_decay),
}
#: Optimizer settings a config may change on resume (applied over the checkpoint's, with a warning).
RESUMABLE_SETTINGS = ("momentum", "weight_decay")


@dataclass
class Data:
    """A data set's splits and this rank's pipelines over them."""

    directory: Path
    train_split: datasets.Split
    val_split: datasets.Split
    train: InputPipeline
    val: InputPipeline
    fingerprint: str


def data_directory(cfg, guard) -> Path:
    """The directory --data names, or the generated/embedded set (built once, collective)."""
    if cfg.data:
        return Path(cfg.data)
    if cfg.synthetic:
        return datasets.synthetic(
            cfg.synthetic,
            cfg.synthetic_features,
            cfg.synthetic_classes,
            seed=cfg.seed,
            guard=guard,
        )
    return datasets.digits(cfg.val_fraction, guard=guard)


def data(cfg, directory: Path, comm) -> Data:
    """Train and validation pipelines over `comm` (the data-parallel ranks)."""
    train_split = datasets.read_split(directory, "train")
    val_split = datasets.read_split(directory, "val")
    common = dict(seed=cfg.seed, comm=comm, num_threads=cfg.reader_threads)
    try:
        train = InputPipeline(
            HDF5Source(str(train_split.directory)),
            cfg.batch_size,
            shuffle_buffer=cfg.shuffle_buffer,
            remainder="drop",
            **common,
        )
    except ValueError as exc:
        if train_split.num_records >= comm.size * cfg.batch_size:
            raise
        raise datasets.DataSetError(
            f"{train_split.num_records} training records cannot give {comm.size} ranks one "
            f"batch of {cfg.batch_size} each: use a smaller --batch-size "
            f"(at most {train_split.num_records // comm.size}) or fewer ranks"
        ) from exc
    val = InputPipeline(
        HDF5Source(str(val_split.directory)),
        max(cfg.batch_size, 64),
        shuffle_buffer=1,
        remainder="pad",
        **common,
    )
    return Data(directory, train_split, val_split, train, val, datasets.fingerprint(directory))


def model(cfg, num_features: int, num_classes: int, xp, rank: int) -> nn.Module:
    """The config's MLP or CNN; every Dropout layer draws its own masks on each rank."""
    if cfg.model == "cnn":  # 3x3 conv + 2x2 pool stages, then Dense --hidden layers
        image = nn.square_image(num_features)
        return nn.cnn(image, num_classes, hidden=cfg.hidden, activation=cfg.activation,
                      seed=cfg.seed, xp=xp)  # fmt: skip
    sizes = [num_features, *cfg.hidden, num_classes]
    net = nn.mlp(sizes, cfg.activation, cfg.dropout, seed=cfg.seed, xp=xp)
    for i, layer in enumerate(m for m in net.modules() if isinstance(m, nn.Dropout)):
        layer.rng = np.random.default_rng([cfg.seed, rank, i])
    return net


def layout(cfg, roles):
    """The 2-D layout (hpcdist.parallel.Layout2D) --model-parallel asks for, else None."""
    if cfg.model_parallel == "none":
        return None
    from .parallel.layout import Layout2D

    return Layout2D(roles.job_comm, cfg.mp_size, timeout=cfg.timeout)


def optimizer(cfg, params) -> nn.Optimizer:
    return OPTIMIZERS[cfg.optimizer](params, cfg)


def schedule(cfg, global_batch: int, steps_per_epoch: int) -> nn.Schedule:
    """Linear scaling from the reference batch, warm-up, then the config's decay."""
    return nn.LinearScalingLR(
        cfg.lr,
        global_batch,
        steps_per_epoch,
        reference_batch=cfg.reference_batch,
        warmup_epochs=cfg.warmup_epochs,
        decay=cfg.schedule,
        total_epochs=cfg.epochs,
        milestones=(cfg.epochs // 2, cfg.epochs * 3 // 4),
    )


def apply_settings(opt, cfg) -> dict:
    """Set the config's optimizer settings on `opt`; {name: (old, new)} of those that changed."""
    changed = {}
    for name in RESUMABLE_SETTINGS:
        if hasattr(opt, name) and getattr(opt, name) != float(getattr(cfg, name)):
            changed[name] = (getattr(opt, name), float(getattr(cfg, name)))
            setattr(opt, name, float(getattr(cfg, name)))
    return changed


def model_shapes(params) -> list:
    """[(name, shape, dtype)] of a model's parameters: what the ranks must agree on."""
    return [(p.name, tuple(p.data.shape), str(p.data.dtype)) for p in params]


def reports_ready(model) -> bool:
    """Whether model.backward takes on_ready (reports each gradient as final, for overlap)."""
    return "on_ready" in inspect.signature(model.backward).parameters


def ps_roles(cfg, comm):
    """ps and worker roles over `comm` (default: the world) when the config asks for ps tasks."""
    if not cfg.ps:
        return None
    from . import cluster

    return cluster.Cluster(cluster.ClusterSpec({"ps": cfg.ps, "worker": None}), comm=comm)
