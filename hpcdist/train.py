"""The main job: `mpirun -n 8 python -m hpcdist.train [--config run.toml] [flags]`."""

from __future__ import annotations

import argparse
import sys
import time

from . import config, devices, metrics, runtime, timeline
from .trainer import PREEMPTED_EXIT_CODE, Trainer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.train",
        description="Data-parallel training of an MLP over MPI ranks. With no --data it trains "
        "on the handwritten digits scikit-learn ships (8x8, 10 classes). Writes metrics.jsonl, "
        "summary.json, curves.png and checkpoints into --run-dir. SIGTERM or SIGUSR1 "
        f"checkpoints and exits with status {PREEMPTED_EXIT_CODE}; --resume continues exactly.",
    )
    config.add_arguments(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    info = runtime.init()
    try:
        cfg = config.from_args(args)
    except ValueError as e:  # same on every rank: each says it, then exits
        if info.is_root:
            print(f"hpcdist.train: error: {e}", file=sys.stderr)
        return 2
    return fit(Trainer(cfg))


def _announce(tr: Trainer) -> None:
    cfg, info = tr.cfg, tr.info
    if cfg.log_device_placement:
        devices.log_device_placement(info, tr.roles.task, tr.placement)
    if info.is_root:
        train, val = tr.train_split, tr.val_split
        sizes = [train.num_features, *cfg.hidden, train.num_classes]
        print(
            f"hpcdist: {info.size} rank(s) on {info.num_nodes} node(s), device "
            f"{tr.placement.device.device_type}, {tr.placement.threads} thread(s) per rank\n"
            f"{tr.roles.describe()}\n"
            f"  data      {train.num_records} train / {val.num_records} val records, "
            f"{train.num_features} features, {train.num_classes} classes\n"
            f"  model     mlp {sizes}, {cfg.optimizer}, peak lr {tr.schedule.peak_lr:.4g} "
            f"for global batch {tr.global_batch}\n"
            f"  exchange  {cfg.exchange}, compression {cfg.compression}; "
            f"{tr.steps_per_epoch} steps per epoch",
            flush=True,
        )


def fit(tr: Trainer) -> int:
    """Train for cfg.epochs or until pre-empted; write the run directory; return exit status."""
    cfg, info, comm = tr.cfg, tr.info, tr.comm
    root = info.is_root
    resumed = cfg.resume and tr.restore()
    if not resumed:
        if cfg.resume and root:
            print(f"hpcdist: --resume: no checkpoint in {tr.ckpt.directory}; starting fresh")
        _clear_run_dir(tr)
    _announce(tr)
    log = metrics.MetricsLogger(tr.run_dir, enabled=root)
    tl = timeline.Timeline(
        tr.run_dir / f"timeline-rank{comm.rank}.json",
        comm.rank,
        enabled=cfg.timeline,
        start_ns=timeline.synchronized_start(comm),
    )
    start = time.perf_counter()
    samples_trained = 0
    status = None
    record: dict = {}
    while tr.epoch < cfg.epochs:
        t0 = time.perf_counter()
        ex0 = tr.exchange.stats.seconds
        step0 = tr.step
        with metrics.Progress(
            tr.steps_per_epoch, f"epoch {tr.epoch + 1}/{cfg.epochs}", enabled=root and cfg.progress
        ) as progress:
            progress.update(step0 - tr.epoch * tr.steps_per_epoch)  # resumed mid-epoch
            status = tr.train_epoch(tl, progress)
        seconds = time.perf_counter() - t0
        samples_trained += (tr.step - step0) * tr.global_batch
        if status is not None:
            break
        with tl.span("eval"):
            evaluation = tr.evaluate()
        data = tr.train_data.stats.reduced()  # this epoch, summed over ranks
        exchange_s = comm.allreduce(tr.exchange.stats.seconds - ex0)
        record = {
            "epoch": tr.epoch + 1,
            "step": tr.step,
            "train_loss": tr.epoch_train_loss,
            **evaluation,
            "lr": tr.optimizer.lr,
            "seconds": seconds,
            "samples_per_s": (tr.step - step0) * tr.global_batch / seconds,
            "data_wait_share": data["wait_s"] / comm.size / seconds,
            "exchange_share": exchange_s / comm.size / seconds,
            "bad_records": data["bad_records"],
        }
        log.log(record)
        if root:
            print(
                f"epoch {record['epoch']:>3}  train loss {record['train_loss']:.4f}  "
                f"val loss {record['val_loss']:.4f}  val acc {record['val_accuracy']:.4f}  "
                f"{record['samples_per_s']:,.0f} samples/s  "
                f"data wait {record['data_wait_share']:.0%}  "
                f"exchange {record['exchange_share']:.0%}",
                flush=True,
            )
        tr.epoch += 1
        if cfg.checkpoint_every and tr.epoch % cfg.checkpoint_every == 0:
            with tl.span("checkpoint"):
                tr.save()
    if status in ("preempted", "max_steps"):
        path = tr.save()
        if root:
            why = (
                f"pre-empted by {tr.preemption.signal_name or 'a signal'}"
                if status == "preempted"
                else "max steps"
            )
            print(
                f"hpcdist: {why} at epoch {tr.epoch + 1}, step {tr.step}; checkpoint {path}",
                flush=True,
            )
    wall = time.perf_counter() - start
    timeline.collect_timelines(tl, comm, tr.run_dir / "timeline.json")
    log.close()
    if root:
        _write_outputs(tr, record, wall, samples_trained, status)
    tr.close()
    return PREEMPTED_EXIT_CODE if status == "preempted" else 0


def _clear_run_dir(tr: Trainer) -> None:
    """A fresh run owns its run directory: drop an earlier run's outputs and checkpoints."""
    if tr.info.is_root and tr.run_dir.is_dir():
        old = [
            tr.run_dir / n for n in ("metrics.jsonl", "summary.json", "curves.png", "timeline.json")
        ]
        old += list(tr.run_dir.glob("timeline-rank*.json")) + list(
            tr.ckpt.directory.glob("ckpt-*.h5")
        )
        old = [p for p in old if p.exists()]
        for path in old:
            path.unlink()
        if old:
            print(
                f"hpcdist: fresh run in {tr.run_dir}: removed {len(old)} file(s) of an earlier "
                "run (use --resume to continue one)"
            )
    tr.comm.Barrier()


def _write_outputs(tr: Trainer, record: dict, wall: float, samples: int, status) -> None:
    summary = {
        "final": record,
        "status": status or "finished",
        "epochs": tr.epoch,
        "steps": tr.step,
        "world_size": tr.comm.size,
        "global_batch": tr.global_batch,
        "wall_time_s": wall,
        "samples_per_s": samples / wall if wall > 0 else 0.0,
        "bytes_on_wire": tr.exchange.stats.wire_bytes,
        "device": str(tr.placement.device),
        "config": tr.cfg.to_dict(),
    }
    path = metrics.write_summary(tr.run_dir, summary)
    plot = metrics.plot_curves(tr.run_dir)
    acc = record.get("val_accuracy")
    print(
        f"hpcdist: done in {wall:.1f} s"
        + (f", validation accuracy {acc:.4f}" if acc is not None else "")
        + f"; {path}"
        + (f", {plot}" if plot else ""),
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
