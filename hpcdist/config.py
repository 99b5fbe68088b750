"""Training configuration: defaults, a TOML file, then command-line flags, in that order.

A setting is one field made by `settings.setting()`: its flag (add_fields) and its
check (check_fields: the annotation's type, the bounds, the choices) come from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from .settings import add_fields, check_fields, setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _exchange_names() -> list[str]:
    from hpcdist.exchange import registry

    return registry.names()


def _check_timeout(value: float, name: str) -> float:
    from hpcdist.guard import check_timeout

    return check_timeout(value, name)


_DATA = (
    "a directory with train/ and val/ shard directories, each made by python -m "
    "hpcdist.data.convert (optional dataset.json: num_classes)"
)
_LR = "; scaled linearly with the real global batch (Goyal et al.)"
_EVERY = "checkpoint every N epochs, 0 for never; SIGTERM/SIGUSR1 always checkpoint"
_BUCKET = "the exchange's measured default"
_SHARE = "an equal share when ranks share a GPU, else grow on demand"
_TIMEOUT = (
    "seconds any blocking collective (gradient exchange, evaluation, checkpointing, metrics, "
    "pre-emption check) may wait before the job names the missing rank and aborts"
)
_MODEL = (
    "mlp: Dense --hidden layers; cnn: two 3x3 conv + 2x2 max-pool stages (16, 32 channels) on "
    "square one-channel images (digits: 1x8x8), then Dense --hidden layers"
)
_RUN_DIR = "a new runs/<UTC date>-<time>, and runs/latest pointed at it (--resume: that run)"
_TIMEOUT_UNSET = "$HPCDIST_TIMEOUT, else $HPCDIST_EXCHANGE_TIMEOUT, else 300"


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in checkpoints and summary.json."""

    data: str | None = setting(None, _DATA, unset="the handwritten digits scikit-learn ships")
    synthetic: int = setting(0, "train on N generated samples instead", metavar="N", ge=0)
    synthetic_features: int = setting(784, "features of --synthetic", metavar="D", ge=1)
    synthetic_classes: int = setting(10, "classes of --synthetic", metavar="K", ge=2)
    epochs: int = setting(40, "passes over the training set", ge=1)
    batch_size: int = setting(16, "samples per rank per step", ge=1)
    lr: float = setting(0.05, f"learning rate for a global batch of --reference-batch{_LR}", gt=0)
    reference_batch: int = setting(128, "the global batch --lr is meant for", ge=1)
    warmup_epochs: float = setting(2.0, "linear lr warm-up", ge=0)
    schedule: str = setting("cosine", "decay after warm-up", choices=("cosine", "constant", "step"))
    optimizer: str = setting(
        "momentum", "the update rule", choices=("sgd", "momentum", "nesterov", "adam")
    )
    momentum: float = setting(0.9, "momentum of momentum and nesterov", ge=0, lt=1)
    weight_decay: float = setting(1e-4, "L2 penalty on the parameters", ge=0)
    model: str = setting("mlp", _MODEL, choices=("mlp", "cnn"))
    hidden: list[int] = setting([128, 64], "hidden layer sizes, e.g. 128,64", ge=1, min_items=1)
    activation: str = setting("relu", "after each hidden layer", choices=("relu", "elu", "tanh"))
    dropout: float = setting(0.0, "dropout rate after each hidden layer", ge=0, lt=1)
    exchange: str = setting("allreduce", "gradient exchange", choices=_exchange_names)
    compression: str = setting("none", "16-bit on the wire", choices=("none", "fp16", "bf16"))
    ps: int = setting(0, "parameter-server tasks (--exchange ps-sync|ps-async)", metavar="N", ge=0)
    replicas_to_aggregate: int = setting(
        0, "ps-sync: gradients averaged per step; 0: all workers", metavar="K", ge=0
    )
    staleness: int = setting(4, "ps-async: most steps a worker may run ahead of the slowest", ge=0)
    staleness_policy: str = setting(
        "none",
        "ps-async: stale gradients as they are, lr / staleness, dropped beyond --staleness, "
        "or delay-compensated (DC-ASGD)",
        choices=("none", "lr", "drop", "dc"),
    )
    async_warmup: int = setting(
        0,
        "ps-async: the first N updates come from worker 0 alone (the others' gradients "
        "dropped and counted)",
        metavar="N",
        ge=0,
    )
    sharding: str = setting(
        "greedy",
        "ps placement: by bytes with large tensors split, or by count",
        choices=("greedy", "round-robin"),
    )
    error_feedback: bool = setting(False, "carry the compression rounding error into the next step")
    compress_within_node: bool = setting(
        False, "16-bit compression between the ranks of one node too (else only between nodes)"
    )
    topology: str = setting(
        "auto",
        "allreduce: flat or hierarchical, or auto: chosen from the links measured at start",
        choices=("auto", "flat", "hierarchical"),
    )
    bucket_bytes: int | None = setting(None, "fusion bucket size", gt=0, unset=_BUCKET)
    overlap: bool = setting(
        False, "start each bucket's exchange in backward, once its gradients are final"
    )
    device: str = setting("auto", "auto, cpu, gpu or a device string such as /gpu:0")
    strict_placement: bool = setting(False, "no CPU fallback when a GPU is asked for but missing")
    gpu_memory_fraction: float | None = setting(
        None, "cap each rank's cupy pool", metavar="F", gt=0, le=1, unset=_SHARE
    )
    seed: int = setting(0, "seeds init, shuffling and dropout", ge=0)
    run_dir: str | None = setting(None, "metrics, summary, plot, checkpoints", unset=_RUN_DIR)
    overwrite: bool = setting(
        False, "let a fresh run replace an earlier run's checkpoints and outputs in --run-dir"
    )
    resume: bool = setting(
        False, "continue from the newest good checkpoint in --run-dir (or start fresh, warning)"
    )
    checkpoint_every: int = setting(1, _EVERY, metavar="EPOCHS", ge=0)
    keep_checkpoints: int = setting(3, "checkpoints kept in --run-dir", ge=1)
    log_device_placement: bool = setting(False, "print each rank's host, job/task and device")
    timeline: bool = setting(
        False, "write Chrome traces (per rank, merged) into --run-dir: chrome://tracing, Perfetto"
    )
    shuffle_buffer: int = setting(1024, "records per rank the shuffle picks from", ge=0)
    reader_threads: int = setting(2, "reader threads per rank", ge=1)
    val_fraction: float = setting(0.2, "of the digits held out for validation", gt=0, lt=1)
    progress: bool = setting(True, "no progress bar or lines (docs/training.md)")
    max_steps: int = setting(0, "stop after this many steps in all; 0: no limit", ge=0)
    timeout: float | None = setting(
        None, _TIMEOUT, metavar="SECONDS", gt=0, check=_check_timeout, unset=_TIMEOUT_UNSET
    )
    model_parallel: str = setting(
        "none", "split the model over --mp-size ranks", choices=("none", "tensor", "pipeline")
    )
    mp_size: int = setting(2, "ranks per model-parallel group (units or stages)", metavar="K", ge=1)
    micro_batches: int = setting(4, "micro-batches per pipeline step", metavar="M", ge=1)
    pipeline_schedule: str = setting("1f1b", "pipeline schedule", choices=("gpipe", "1f1b"))

    def to_dict(self) -> dict:
        """Every setting by name (lists copied), as checkpoints and summary.json store it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str = "") -> TrainConfig:
        """A validated config from {setting: value}; unknown names are refused, naming the known."""
        _refuse_unknown(cls, values, where)
        return validate(cls(**values))


def _refuse_unknown(cls: type, values: dict, where: str = "") -> None:
    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}unknown setting(s) {unknown}; known: {known}")


def load_toml(path: str | Path) -> dict:
    """The [train] table of a TOML file (or the whole file when it has none)."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"--config: no such file {path}") from None
    except OSError as e:
        raise ValueError(f"--config {path}: cannot read it: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config {path}: not valid TOML: {e}") from None
    table = table.get("train", table)
    if not isinstance(table, dict):
        raise ValueError(f"--config {path}: train must be a table ([train]), got {table!r}")
    _refuse_unknown(TrainConfig, table, f"--config {path}: ")
    return table


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every setting's type and range in place; raise ValueError naming the setting."""
    check_fields(cfg)
    _check_ps(cfg)
    _check_model(cfg)
    return cfg


def _check_model(cfg: TrainConfig) -> None:
    """--dropout belongs to the MLP."""
    if cfg.model == "cnn" and cfg.dropout:
        raise ValueError(f"dropout={cfg.dropout} is for model='mlp'; model='cnn' has no dropout")


def _check_ps(cfg: TrainConfig) -> None:
    """--ps N and a parameter-server exchange go together."""
    ps_exchange = cfg.exchange.startswith("ps-")
    if ps_exchange and not cfg.ps:
        raise ValueError(f"exchange={cfg.exchange!r} needs parameter-server tasks: add --ps N")
    if cfg.ps and not ps_exchange:
        raise ValueError(
            f"ps={cfg.ps} asks for parameter-server tasks, but exchange={cfg.exchange!r} does not "
            "use them: add --exchange ps-sync or ps-async"
        )


def from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, overridden by --config's TOML, overridden by the flags given."""
    values = load_toml(args.config) if getattr(args, "config", None) else {}
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig.from_dict(values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--config and a flag per TrainConfig field; defaults are None so the TOML can fill them."""
    group = parser.add_argument_group(
        "training (flags override --config)",
        "Each flag is also a key of the [train] table: --batch-size 32 is batch_size = 32.",
    )
    group.add_argument(
        "--config", metavar="TOML", help="a TOML file with a [train] table of these settings"
    )
    add_fields(group, TrainConfig)
