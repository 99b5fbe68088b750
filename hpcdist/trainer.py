"""Trainer: one model trained on the ranks of a communicator, from its parts or from a config.

    import hpcdist
    cfg = hpcdist.TrainConfig(seed=1, epochs=2, run_dir="runs/a")
    with hpcdist.Trainer(cfg, comm=group) as tr:       # group: any communicator
        summary = tr.fit()                             # what summary.json holds

The trainer is the one place that wires data, model, optimizer and exchange
together. Every part defaults to what the config names (build.py, the
exchange registry) and can be passed in instead. "Root" is rank 0 of the
trainer's communicator: it writes the run directory, so trainers on disjoint
groups of one job each keep their own. Every collective goes through the
trainer's Guard (one deadline, `timeout`), and the ranks check at start that
they were given the same settings, data and model (agreement.py).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from . import (
    agreement,
    build,
    cluster,
    devices,
    metrics,
    nn,
    parallel,
    report,
    runs,
    runtime,
    timeline,
)
from . import config as config_mod
from . import straggler as straggler_mod
from .checkpoint import CheckpointManager
from .errors import NonFiniteGradientError
from .exchange import registry
from .guard import Guard
from .nonfinite import name_nonfinite_input
from .progress import Progress
from .trainstate import TrainState

#: Exit status of a run that checkpointed after SIGTERM/SIGUSR1 (jobscripts requeue on it).
PREEMPTED_EXIT_CODE = 3
#: Steps between checks (one small allreduce) of whether any rank was signalled.
PREEMPT_CHECK_EVERY = 8


class Trainer:
    """Builds a run from a TrainConfig and its parts; fit() trains, evaluates and checkpoints."""

    def __init__(
        self,
        config: config_mod.TrainConfig | None = None,
        comm=None,
        *,
        model: nn.Module | None = None,
        optimizer: nn.Optimizer | None = None,
        exchange=None,
        roles: cluster.Cluster | None = None,
    ):
        cfg = dataclasses.replace(config) if config is not None else config_mod.TrainConfig()
        self.cfg = cfg = config_mod.validate(cfg)
        self.info = runtime.init()
        roles = roles or build.ps_roles(cfg, comm)
        self.server = None
        if roles is not None and roles.task.job == "ps":  # a ps task serves; workers train
            self.roles, self.server = roles, registry.create(cfg.exchange, roles, cfg)
            return
        if comm is None and roles is not None and roles.num_tasks("ps"):
            comm = roles.job_comm  # the workers' communicator; the exchange reaches the ps
        self.comm = comm or (roles.comm if roles is not None else runtime.world_comm())
        self.guard = Guard(self.comm, cfg.timeout, name="trainer")
        self.is_root = self.guard.rank == 0
        # First collective: nothing rank-specific runs before the settings agree.
        agreement.check(self.guard, "settings", agreement.comparable(cfg.to_dict()))
        workers = cluster.ClusterSpec({"worker": None})
        self.roles = roles or cluster.Cluster(workers, guard=self.guard)
        self.placement = devices.pin_device(
            cfg.device,
            task=self.roles.task,
            strict=cfg.strict_placement,
            memory_fraction=cfg.gpu_memory_fraction,
        )
        self.xp = self.placement.xp
        self.run_dir = runs.resolve(cfg.run_dir, cfg.resume, self.guard)  # collective
        cfg.run_dir = str(self.run_dir)  # what summary.json and checkpoints record
        self._build_parts(model, optimizer, exchange)
        self.ckpt = CheckpointManager(
            self.run_dir / "checkpoints",
            keep=cfg.keep_checkpoints,
            guard=self.guard,
            **parallel.checkpoints.slots(self.layout),  # a split model: one slot per replica
        )
        self.state = TrainState(self)
        self.step, self.epoch = 0, 0
        self.sums = (0.0, 0)  # this rank's training loss sum and samples in the current epoch
        self.preemption = runtime.catch_preemption()
        # $HPCDIST_STRAGGLER (a study/testing knob): None unless this rank is the slow one.
        self.straggler = straggler_mod.from_env(self.guard.rank, self.guard.size)

    def _build_parts(self, model, optimizer, exchange) -> None:
        cfg = self.cfg
        self.layout = build.layout(cfg, self.roles)  # model-parallel groups x replicas, or None
        self.data_comm = self.layout.dp_comm if self.layout else self.roles.job_comm
        self.data_guard = (
            self.guard if self.data_comm.size == self.comm.size else Guard(self.data_comm)
        )
        directory = build.data_directory(cfg, self.guard)
        self.data = build.data(cfg, directory, self.data_comm)
        split = self.data.train_split
        self.model = model or build.model(
            cfg, split.num_features, split.num_classes, self.xp, self.data_comm.rank
        )
        shapes = build.model_shapes(self.model.parameters())  # of the unsplit model
        facts = {"data": self.data.fingerprint, "model": shapes}
        agreement.check(self.guard, "data and model", facts)
        if self.layout is not None:  # this rank keeps its part of the unsplit model
            if exchange is not None:
                raise ValueError("--model-parallel builds its own exchange; pass none")
            self.model, exchange = parallel.split_for_training(cfg, self.model, self.layout)
        self.params = self.model.parameters()
        self.exchange = exchange or registry.create(cfg.exchange, self.roles, cfg)
        self.model.bind_grads(self.exchange.attach([p.data for p in self.params]))
        self.exchange.broadcast_parameters([p.data for p in self.params], root=0)
        self.optimizer = optimizer or build.optimizer(cfg, self.params)
        overlap = cfg.overlap and build.reports_ready(self.model)  # buckets start in backward
        self.backward_kw = {"on_ready": self.exchange.gradient_ready} if overlap else {}
        self.global_batch = cfg.batch_size * self.data_comm.size
        self.steps_per_epoch = self.data.train.steps_per_epoch
        self.schedule = build.schedule(cfg, self.global_batch, self.steps_per_epoch)
        if self.exchange.updates == "parameters":  # the exchange's servers apply the update
            self.optimizer = self.exchange.bind_optimizer(
                self.optimizer, self.schedule, self.steps_per_epoch, park_every=PREEMPT_CHECK_EVERY
            )

    @property
    def train_split(self):
        return self.data.train_split

    @property
    def val_split(self):
        return self.data.val_split

    # --- the run ------------------------------------------------------------
    def fit(self) -> dict:
        """Train for cfg.epochs (or until pre-empted or max_steps); return the summary dict."""
        if self.server is not None:  # a ps task: answer the workers until they are done
            return {"status": "finished", "parameter_server_task": self.server.serve()}
        self._begin()
        status = None
        while self.epoch < self.cfg.epochs and status is None:
            status = self._epoch()
        if status is not None:
            self._stop_early(status)
        return self._end(status)

    def _begin(self) -> None:
        cfg = self.cfg
        resumed = cfg.resume and self.state.restore()
        if not resumed:
            if cfg.resume and self.is_root:
                print(f"hpcdist: --resume: no checkpoint in {self.ckpt.directory}; starting fresh")
            runs.claim(self.run_dir, self.ckpt.directory, overwrite=cfg.overwrite, guard=self.guard)
        report.announce(self)
        self.log = metrics.MetricsLogger(self.run_dir, enabled=self.is_root)
        self.tl = timeline.Timeline(
            self.run_dir / f"timeline-rank{self.guard.rank}.json",
            self.guard.rank,
            enabled=cfg.timeline,
            start_ns=timeline.synchronized_start(self.guard),
        )
        self.record: dict = {}
        self.samples_trained = 0
        self.start_time = time.perf_counter()

    def _epoch(self) -> str | None:
        """One epoch (or its rest): train, evaluate, log, checkpoint; why it stopped, or None."""
        t0, step0, ex0 = time.perf_counter(), self.step, self.exchange.stats.seconds
        with Progress(
            self.steps_per_epoch,
            f"epoch {self.epoch + 1}/{self.cfg.epochs}",
            enabled=self.is_root and self.cfg.progress,
        ) as progress:
            progress.update(step0 - self.epoch * self.steps_per_epoch)  # resumed mid-epoch
            status = self.train_epoch(progress)
        seconds = time.perf_counter() - t0
        self.samples_trained += (self.step - step0) * self.global_batch
        if status is not None:
            return status
        with self.tl.span("eval"):
            self.record = report.epoch_record(self, seconds, step0, ex0)
        self.log.log(self.record)
        if self.is_root:
            print(metrics.epoch_line(self.record), flush=True)
        self.epoch += 1
        every = self.cfg.checkpoint_every
        if every and self.epoch % every == 0:
            with self.tl.span("checkpoint"):
                self.state.save()
        return None

    def _stop_early(self, status: str) -> None:
        path = self.state.save()
        if self.is_root:
            print(report.stop_line(self, status, path), flush=True)

    def _end(self, status: str | None) -> dict:
        wall = time.perf_counter() - self.start_time
        timeline.collect_timelines(self.tl, self.guard, self.run_dir / "timeline.json")
        self.log.close()
        summary = self.summary(status, wall)
        if self.is_root:
            path = metrics.write_summary(self.run_dir, summary)
            plot = metrics.plot_curves(self.run_dir)
            print(metrics.closing_line(summary, path, plot), flush=True)
        return summary

    def summary(self, status: str | None, wall: float) -> dict:
        """What summary.json holds (the same dict on every rank)."""
        return report.summary(self, status, wall)

    # --- steps ----------------------------------------------------------------
    def train_epoch(self, progress) -> str | None:
        """Run the rest of the current epoch; 'preempted' or 'max_steps' if it stopped early."""
        loss_sum, seen = self.sums
        batches = self.data.train.epoch(self.epoch)
        tl, xp = self.tl, self.xp
        while True:
            with tl.span("data_wait"):
                batch = next(batches, None)
            if batch is None:
                break
            loss = self.train_step(xp.asarray(batch[0]), xp.asarray(batch[1]))
            loss_sum, seen = loss_sum + loss * len(batch[1]), seen + len(batch[1])
            self.sums = (loss_sum, seen)
            progress.update(1, **{"train loss so far (rank 0)": loss_sum / seen})
            if self.cfg.max_steps and self.step >= self.cfg.max_steps:
                return "max_steps"
            if self.step % PREEMPT_CHECK_EVERY == 0 and self._preempted():
                return "preempted"
        totals = self.data_guard.allreduce(
            np.array([loss_sum, seen], dtype=np.float64), what="the epoch's training loss sums"
        )
        self.epoch_train_loss = totals[0] / max(totals[1], 1)
        self.sums = (0.0, 0)
        return None

    def train_step(self, x, y) -> float:
        """Forward, backward, exchange, update; this rank's mean loss on the batch."""
        tl = self.tl
        if self.straggler is not None:
            self.straggler.delay()
        if hasattr(self.model, "train_batch"):  # a pipeline runs forward and backward together
            with tl.span("pipeline"):
                loss = self.model.train_batch(x, y)
        else:
            with tl.span("forward"):
                logits = self.model.forward(x)
                loss, dlogits = nn.softmax_cross_entropy(logits, y)
            with tl.span("backward"):
                self.model.backward(dlogits, input_grad=False, **self.backward_kw)
        with tl.span("exchange"):
            try:
                result = self.exchange.synchronize()
            except NonFiniteGradientError as ex:  # name the rank whose input it was
                where = f"epoch {self.epoch + 1}, step {self.step + 1}"
                records = functools.partial(self.data.train.nonfinite_records, self.epoch)
                raise name_nonfinite_input(self.guard, x, ex, where, records) from ex
        if self.exchange.updates != "parameters" and not result.skip:
            with tl.span("optimizer"):
                self.schedule.apply(self.optimizer, self.step)
                self.optimizer.step()
        self.step += 1
        return float(loss)

    def evaluate(self) -> dict:
        """Loss and accuracy over the whole validation set, summed over the data ranks."""
        self.model.eval()
        sums = np.zeros(3)
        for x, y, mask in self.data.val.epoch(0):
            logits = self.model.forward(self.xp.asarray(x))
            w = self.xp.asarray(mask, dtype=logits.dtype)
            sums += nn.softmax_cross_entropy_sums(logits, self.xp.asarray(y), w)
        self.model.train()
        sums = self.data_guard.allreduce(sums, what="the validation loss and accuracy sums")
        return {
            "val_loss": sums[0] / sums[2],
            "val_accuracy": sums[1] / sums[2],
            "val_count": int(sums[2]),
        }

    def _preempted(self) -> bool:
        """Whether any rank was signalled (every rank agrees)."""
        flag = np.array([int(self.preemption.requested)], np.int32)
        return bool(self.guard.allreduce(flag, op="max", what="the pre-emption check")[0])

    # --- around the run -------------------------------------------------------
    def close(self, free_exchange: bool = True) -> None:
        """Stop reader threads, free the exchange's windows (a collective), restore signal
        handling."""
        if self.server is not None:
            self.server.close()
            return
        for pipe in (self.data.train, self.data.val):
            pipe.close()
        if free_exchange:
            self.exchange.close()
        self.preemption.uninstall()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # An error on this rank alone leaves the others in a collective: freeing the windows
        # would wait for them until the deadline and hide the error. It goes on at once (the
        # excepthook prints it and ends the job); a caller that catches it keeps this
        # trainer's windows until MPI_Finalize.
        self.close(free_exchange=exc_type is None or self.comm.size == 1)
