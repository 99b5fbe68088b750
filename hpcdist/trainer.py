"""The data-parallel training loop: the one place that wires data, model and exchange together."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from mpi4py import MPI

from . import checkpoint, cluster, datasets, devices, nn, runtime, timeline
from .backend import to_numpy
from .compression import Compression
from .config import TrainConfig
from .data import HDF5Source, InputPipeline
from .exchange import AllreduceExchange

#: Exit status of a run that checkpointed after SIGTERM/SIGUSR1 (jobscripts requeue on it).
PREEMPTED_EXIT_CODE = 3
#: Steps between checks (one small allreduce) of whether any rank was signalled.
PREEMPT_CHECK_EVERY = 8

_OPTIMIZERS = {
    "sgd": lambda p, c: nn.SGD(p, c.lr, weight_decay=c.weight_decay),
    "momentum": lambda p, c: nn.Momentum(p, c.lr, c.momentum, weight_decay=c.weight_decay),
    "nesterov": lambda p, c: nn.Momentum(
        p, c.lr, c.momentum, nesterov=True, weight_decay=c.weight_decay
    ),
    "adam": lambda p, c: nn.Adam(p, c.lr, weight_decay=c.weight_decay),
}


class Trainer:
    """Builds the run from a TrainConfig; fit() trains, evaluates and checkpoints."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.info = runtime.init()
        self.roles = cluster.Cluster(cluster.ClusterSpec({"worker": None}))
        self.comm = self.roles.job_comm
        self.placement = devices.pin_device(
            cfg.device,
            task=self.roles.task,
            strict=cfg.strict_placement,
            memory_fraction=cfg.gpu_memory_fraction,
        )
        self.xp = self.placement.xp
        self.run_dir = Path(cfg.run_dir)
        self._build_data()
        self._build_model()
        self.ckpt = checkpoint.CheckpointManager(
            self.run_dir / "checkpoints", keep=cfg.keep_checkpoints, comm=self.comm
        )
        self.step, self.epoch = 0, 0
        self.preemption = runtime.catch_preemption()
        self._flag = np.zeros(1, np.int32)

    # --- construction -------------------------------------------------------

    def _build_data(self) -> None:
        cfg = self.cfg
        if cfg.data:
            directory = Path(cfg.data)
        elif cfg.synthetic:
            directory = datasets.synthetic(
                cfg.synthetic,
                cfg.synthetic_features,
                cfg.synthetic_classes,
                seed=cfg.seed,
                comm=self.comm,
            )
        else:
            directory = datasets.digits(cfg.val_fraction, comm=self.comm)
        self.train_split = datasets.read_split(directory, "train")
        self.val_split = datasets.read_split(directory, "val")
        common = dict(seed=cfg.seed, comm=self.comm, num_threads=cfg.reader_threads)
        self.train_data = InputPipeline(
            HDF5Source(str(self.train_split.directory)),
            batch_size=cfg.batch_size,
            shuffle_buffer=cfg.shuffle_buffer,
            remainder="drop",
            **common,
        )
        self.val_data = InputPipeline(
            HDF5Source(str(self.val_split.directory)),
            batch_size=max(cfg.batch_size, 64),
            shuffle_buffer=1,
            remainder="pad",
            **common,
        )

    def _build_model(self) -> None:
        cfg = self.cfg
        sizes = [self.train_split.num_features, *cfg.hidden, self.train_split.num_classes]
        self.model = nn.mlp(sizes, cfg.activation, cfg.dropout, seed=cfg.seed, xp=self.xp)
        for i, layer in enumerate(m for m in self.model.modules() if isinstance(m, nn.Dropout)):
            layer.rng = np.random.default_rng([cfg.seed, self.comm.rank, i])  # own masks per rank
        self.params = self.model.parameters()
        self.exchange = AllreduceExchange(
            comm=self.comm,
            compression=getattr(Compression, cfg.compression),
            bucket_bytes=cfg.bucket_bytes,
            error_feedback=cfg.error_feedback,
        )
        self.model.bind_grads(self.exchange.attach([p.data for p in self.params]))
        self.exchange.broadcast_parameters([p.data for p in self.params], root=0)
        self.optimizer = _OPTIMIZERS[cfg.optimizer](self.params, cfg)
        self.global_batch = cfg.batch_size * self.comm.size
        self.steps_per_epoch = self.train_data.steps_per_epoch
        self.schedule = nn.LinearScalingLR(
            cfg.lr,
            self.global_batch,
            self.steps_per_epoch,
            reference_batch=cfg.reference_batch,
            warmup_epochs=cfg.warmup_epochs,
            decay=cfg.schedule,
            total_epochs=cfg.epochs,
            milestones=(cfg.epochs // 2, cfg.epochs * 3 // 4),
        )

    # --- state --------------------------------------------------------------

    def state(self) -> tuple[dict, dict]:
        """(arrays by group, meta) for a checkpoint of this exact moment."""
        model_state = self.model.state_dict()
        names = {p.name for p in self.params}
        opt = self.optimizer.state_dict()
        arrays = {
            "params": {k: v for k, v in model_state.items() if k in names},
            "optimizer": {k: np.asarray(v) for k, v in opt.items() if isinstance(v, np.ndarray)},
            "rng": {k: np.asarray(v) for k, v in model_state.items() if k not in names},
            "pipeline": _arrays(self.train_data.state_dict()),
            "residuals": _arrays(self.exchange.state_dict()),
        }
        opt_scalars = {k: v for k, v in opt.items() if not isinstance(v, np.ndarray)}
        meta = {"config": self.cfg.to_dict(), "optimizer": opt_scalars, "epoch_sums": self._sums}
        return {g: d for g, d in arrays.items() if d}, meta

    def save(self) -> Path:
        arrays, meta = self.state()
        return self.ckpt.save(self.step, self.epoch, arrays, meta)

    def restore(self) -> bool:
        """Load the newest checkpoint every rank agrees on; False when there is none."""
        arrays, _ = self.state()
        expected = checkpoint.expected_spec({"params": arrays["params"]})
        with warnings.catch_warnings():
            if not self.info.is_root:  # the warning names every rank's reason; say it once
                warnings.simplefilter("ignore", checkpoint.CheckpointWarning)
            ckpt = self.ckpt.restore(expected=expected)
        if ckpt is None:
            return False
        saved = ckpt.meta.get("config", {})
        for key in ("hidden", "activation", "optimizer", "batch_size", "seed", "compression"):
            if key in saved and saved[key] != getattr(self.cfg, key):
                raise checkpoint.CheckpointError(
                    f"{ckpt.path} was written with {key}={saved[key]!r}, this run has "
                    f"{key}={getattr(self.cfg, key)!r}; refusing to resume a different run"
                )
        groups = ckpt.arrays
        self.model.load_state_dict({**groups["params"], **groups.get("rng", {})})
        self.optimizer.load_state_dict({**ckpt.meta["optimizer"], **groups.get("optimizer", {})})
        self.train_data.load_state_dict(groups.get("pipeline", {}))
        if groups.get("residuals"):
            self.exchange.load_state_dict(groups["residuals"])
        self.step, self.epoch = ckpt.step, ckpt.epoch
        self._sums = ckpt.meta.get("epoch_sums")
        if self.info.is_root:
            print(f"hpcdist: resumed from {ckpt.path} (epoch {self.epoch}, step {self.step})")
        return True

    _sums = None  # train loss sum and sample count of the epoch in progress

    def close(self) -> None:
        """Stop reader threads, free the exchange's windows, restore signal handling."""
        for pipe in (self.train_data, self.val_data):
            close = getattr(pipe, "close", None)
            if close:
                close()
        self.exchange.close()
        self.preemption.uninstall()

    # --- the loop -----------------------------------------------------------

    def evaluate(self) -> dict:
        """Loss and accuracy over the whole validation set, summed over ranks."""
        self.model.eval()
        sums = np.zeros(3)
        for x, y, mask in self.val_data.epoch(0):
            logits = self.model.forward(self.xp.asarray(x))
            w = self.xp.asarray(mask, dtype=logits.dtype)
            sums += nn.softmax_cross_entropy_sums(logits, self.xp.asarray(y), w)
        self.model.train()
        sums = self.comm.allreduce(sums)  # sum over ranks (numpy float64, fixed order)
        return {
            "val_loss": sums[0] / sums[2],
            "val_accuracy": sums[1] / sums[2],
            "val_count": int(sums[2]),
        }

    def _preempted(self) -> bool:
        """Whether any rank was signalled (a one-int buffer allreduce, every rank agrees)."""
        self._flag[0] = self.preemption.requested
        self.comm.Allreduce(MPI.IN_PLACE, self._flag, op=MPI.MAX)
        return bool(self._flag[0])

    def train_epoch(self, tl: timeline.Timeline, progress) -> str | None:
        """Run the rest of the current epoch; 'preempted' or 'max_steps' if it stopped early."""
        loss_sum, seen = self._sums or (0.0, 0)
        self._sums = None
        batches = self.train_data.epoch(self.epoch)
        xp = self.xp
        while True:
            with tl.span("data_wait"):
                batch = next(batches, None)
            if batch is None:
                break
            x, y = xp.asarray(batch[0]), xp.asarray(batch[1])
            with tl.span("forward"):
                logits = self.model.forward(x)
                loss, dlogits = nn.softmax_cross_entropy(logits, y)
            with tl.span("backward"):
                self.model.backward(dlogits, input_grad=False)
            with tl.span("exchange"):
                result = self.exchange.synchronize()
            if not result.skip:
                with tl.span("optimizer"):
                    self.schedule.apply(self.optimizer, self.step)
                    self.optimizer.step()
            self.step += 1
            loss_sum, seen = loss_sum + float(loss) * len(y), seen + len(y)
            progress.update(1, loss=f"{loss_sum / seen:.4f}")
            if self.cfg.max_steps and self.step >= self.cfg.max_steps:
                self._sums = (loss_sum, seen)
                return "max_steps"
            if self.step % PREEMPT_CHECK_EVERY == 0 and self._preempted():
                self._sums = (loss_sum, seen)
                return "preempted"
        totals = self.comm.allreduce(np.array([loss_sum, seen], dtype=np.float64))
        self.epoch_train_loss = totals[0] / max(totals[1], 1)
        return None


def _arrays(state: dict) -> dict:
    """A state dict as numpy arrays (scalars become 0-d arrays) for the checkpoint."""
    return {k: np.asarray(to_numpy(v)) for k, v in state.items()}
