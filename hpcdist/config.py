"""Training configuration: defaults, a TOML file, then command-line flags, in that order."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in checkpoints and summary.json."""

    data: str | None = None  # directory of HDF5 shards (or a manifest); None: the digits
    synthetic: int = 0  # > 0: a generated classification set of this many samples
    synthetic_features: int = 784
    synthetic_classes: int = 10
    epochs: int = 40
    batch_size: int = 16  # per rank
    lr: float = 0.05  # for a global batch of `reference_batch`; scaled linearly
    reference_batch: int = 128
    warmup_epochs: float = 2.0
    schedule: str = "cosine"  # cosine | constant | step
    optimizer: str = "momentum"  # sgd | momentum | nesterov | adam
    momentum: float = 0.9
    weight_decay: float = 1e-4
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    activation: str = "relu"  # relu | elu | tanh
    dropout: float = 0.0
    exchange: str = "allreduce"
    compression: str = "none"  # none | fp16 | bf16
    error_feedback: bool = False
    bucket_bytes: int | None = None  # None: the exchange's measured default
    device: str = "auto"  # auto | cpu | gpu | a device string
    strict_placement: bool = False
    gpu_memory_fraction: float | None = None
    seed: int = 0
    run_dir: str = "runs/latest"
    resume: bool = False
    checkpoint_every: int = 1  # epochs; 0 turns periodic checkpoints off
    keep_checkpoints: int = 3
    log_device_placement: bool = False
    timeline: bool = False
    shuffle_buffer: int = 1024
    reader_threads: int = 2
    val_fraction: float = 0.2  # of the digits set, for the embedded default
    progress: bool = True
    max_steps: int = 0  # > 0: stop after this many steps in all (for tests and benchmarks)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_CHOICES = {
    "schedule": ("cosine", "constant", "step"),
    "optimizer": ("sgd", "momentum", "nesterov", "adam"),
    "activation": ("relu", "elu", "tanh"),
    "exchange": ("allreduce",),
    "compression": ("none", "fp16", "bf16"),
}


def _parse_hidden(text) -> list[int]:
    if isinstance(text, list):
        return [int(v) for v in text]
    try:
        sizes = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden wants sizes like 128,64; got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden wants positive sizes like 128,64; got {text!r}")
    return sizes


def load_toml(path: str | Path) -> dict:
    """The [train] table of a TOML file (or the whole file when it has none)."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"--config: no such file {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config {path}: not valid TOML: {e}") from None
    table = table.get("train", table)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"--config {path}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return table


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check values that argparse cannot; raise ValueError naming the setting."""
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(cfg, name)!r}")
    for name in ("epochs", "batch_size", "keep_checkpoints", "reader_threads", "shuffle_buffer"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)!r}")
    if cfg.lr <= 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {cfg.val_fraction}")
    cfg.hidden = _parse_hidden(cfg.hidden)
    return cfg


def from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, overridden by --config's TOML, overridden by the flags given."""
    values = load_toml(args.config) if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return validate(TrainConfig(**values))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag; defaults are None so the TOML can fill them."""
    d = TrainConfig()
    g = p.add_argument_group("training (flags override --config)")
    g.add_argument(
        "--config", metavar="TOML", help="a TOML file with a [train] table of these settings"
    )
    g.add_argument(
        "--data",
        help="a directory with train/ and val/ shard directories, each made by python -m "
        "hpcdist.data.convert (optional dataset.json: num_classes); default: the handwritten "
        "digits scikit-learn ships",
    )
    g.add_argument(
        "--synthetic", type=int, metavar="N", help="train on N generated samples instead"
    )
    g.add_argument(
        "--synthetic-features",
        type=int,
        metavar="D",
        help=f"features of --synthetic (default {d.synthetic_features})",
    )
    g.add_argument("--epochs", type=int, help=f"passes over the training set (default {d.epochs})")
    g.add_argument(
        "--batch-size", type=int, help=f"samples per rank per step (default {d.batch_size})"
    )
    g.add_argument(
        "--lr",
        type=float,
        help=f"learning rate for a global batch of --reference-batch "
        f"(default {d.lr}); scaled linearly with the real global batch (Goyal et al.)",
    )
    g.add_argument("--reference-batch", type=int, help=f"(default {d.reference_batch})")
    g.add_argument(
        "--warmup-epochs", type=float, help=f"linear lr warm-up (default {d.warmup_epochs})"
    )
    g.add_argument("--schedule", choices=_CHOICES["schedule"], help=f"(default {d.schedule})")
    g.add_argument("--optimizer", choices=_CHOICES["optimizer"], help=f"(default {d.optimizer})")
    g.add_argument("--momentum", type=float, help=f"(default {d.momentum})")
    g.add_argument("--weight-decay", type=float, help=f"(default {d.weight_decay})")
    g.add_argument(
        "--hidden",
        type=_parse_hidden,
        help="hidden layer sizes, e.g. 128,64 (default " + ",".join(map(str, d.hidden)) + ")",
    )
    g.add_argument("--activation", choices=_CHOICES["activation"], help=f"(default {d.activation})")
    g.add_argument(
        "--dropout", type=float, help=f"dropout rate after each hidden layer (default {d.dropout})"
    )
    g.add_argument(
        "--exchange",
        choices=_CHOICES["exchange"],
        help="gradient exchange (default allreduce; parameter-server modes come later)",
    )
    g.add_argument(
        "--compression",
        choices=_CHOICES["compression"],
        help="16-bit gradients on the wire, summed in float32 (default none)",
    )
    g.add_argument(
        "--error-feedback",
        action="store_const",
        const=True,
        help="carry the compression rounding error into the next step",
    )
    g.add_argument(
        "--bucket-bytes", type=int, help="fusion bucket size (default: measured default)"
    )
    g.add_argument(
        "--device", help="auto, cpu, gpu or a device string such as /gpu:0 (default auto)"
    )
    g.add_argument(
        "--strict-placement",
        action="store_const",
        const=True,
        help="fail instead of falling back to the CPU when a GPU is asked for but missing",
    )
    g.add_argument(
        "--gpu-memory-fraction",
        type=float,
        metavar="F",
        help="cap each rank's cupy "
        "pool (default: an equal share when ranks share a GPU, else grow on demand)",
    )
    g.add_argument("--seed", type=int, help=f"seeds init, shuffling and dropout (default {d.seed})")
    g.add_argument("--run-dir", help=f"metrics, summary, plot, checkpoints (default {d.run_dir})")
    g.add_argument(
        "--resume",
        action="store_const",
        const=True,
        help="continue from the newest "
        "good checkpoint in --run-dir (start fresh, with a warning, if there is none)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="EPOCHS",
        help="checkpoint every N "
        f"epochs, 0 for never (default {d.checkpoint_every}); SIGTERM/SIGUSR1 always checkpoint",
    )
    g.add_argument("--keep-checkpoints", type=int, help=f"(default {d.keep_checkpoints})")
    g.add_argument(
        "--log-device-placement",
        action="store_const",
        const=True,
        help="print one line per rank: rank, host, job/task and device",
    )
    g.add_argument(
        "--timeline",
        action="store_const",
        const=True,
        help="write a Chrome trace per "
        "rank and a merged one into --run-dir (open in chrome://tracing or Perfetto)",
    )
    g.add_argument(
        "--shuffle-buffer", type=int, help=f"records per rank (default {d.shuffle_buffer})"
    )
    g.add_argument("--reader-threads", type=int, help=f"(default {d.reader_threads})")
    g.add_argument(
        "--no-progress", dest="progress", action="store_const", const=False, help="no progress bar"
    )
    g.add_argument("--max-steps", type=int, help="stop after this many steps in all")
