"""What a trainer says about its run: the start-up lines and the summary dict."""

from __future__ import annotations

import numpy as np

from . import devices


def announce(tr) -> None:
    """Rank 0 says what this run is: ranks, roles, data, model, exchange."""
    cfg, info = tr.cfg, tr.info
    if cfg.log_device_placement:
        devices.log_device_placement(info, tr.roles.task, tr.placement, guard=tr.guard)
    if not tr.is_root:
        return
    train, val = tr.data.train_split, tr.data.val_split
    print(
        f"hpcdist: {tr.comm.size} rank(s) on {info.num_nodes} node(s), device "
        f"{tr.placement.device.device_type}, {tr.placement.threads} thread(s) per rank\n"
        f"{tr.roles.describe()}\n"
        f"{tr.layout.describe() + chr(10) if getattr(tr, 'layout', None) else ''}"
        f"  data      {train.num_records} train / {val.num_records} val records, "
        f"{train.num_features} features, {train.num_classes} classes\n"
        f"  model     {type(tr.model).__name__} of {len(tr.params)} parameter arrays, "
        f"{cfg.optimizer}, peak lr {tr.schedule.peak_lr:.4g} for global batch "
        f"{tr.global_batch}\n"
        f"  exchange  {cfg.exchange}, compression {cfg.compression}; "
        f"{tr.steps_per_epoch} steps per epoch",
        flush=True,
    )


def epoch_record(tr, seconds: float, step0: int, ex0: float) -> dict:
    """One line of metrics.jsonl: the epoch's losses, validation, rates and shares (collective:
    tr.evaluate(), the data statistics and the exchange seconds are summed over the ranks)."""
    evaluation = tr.evaluate()
    data = tr.data.train.stats.reduced(tr.data_guard)  # this epoch, summed over ranks
    exchange_s = tr.guard.allreduce(
        np.array([tr.exchange.stats.seconds - ex0]), what="the epoch's exchange seconds"
    )[0]
    return {
        "epoch": tr.epoch + 1,
        "step": tr.step,
        "train_loss": tr.epoch_train_loss,
        **evaluation,
        "lr": tr.optimizer.lr,
        "seconds": seconds,
        "samples_per_s": (tr.step - step0) * tr.global_batch / seconds,
        "data_wait_share": data["wait_s"] / tr.data_comm.size / seconds,
        "exchange_share": exchange_s / tr.comm.size / seconds,
        "bad_records": data["bad_records"],
    }


def stop_line(tr, status: str, path) -> str:
    """What rank 0 says when a run stops before its last epoch."""
    if status == "preempted":
        why = f"pre-empted by {tr.preemption.signal_name or 'a signal'}"
    elif status == "max_steps":
        why = f"max steps ({tr.cfg.max_steps})"
    else:
        why = f"stopped ({status})"  # a subclass's train_epoch status, e.g. "pruned"
    return f"hpcdist: {why} at epoch {tr.epoch + 1}, step {tr.step}; checkpoint {path}"


def summary(tr, status: str | None, wall: float) -> dict:
    """What summary.json holds (the same dict on every rank)."""
    out = _summary(tr, status, wall)
    if hasattr(tr.exchange, "statistics"):  # a parameter server's figures
        out["parameter_server"] = tr.exchange.statistics()
    return out


def _summary(tr, status: str | None, wall: float) -> dict:
    return {
        "final": tr.record,
        "status": status or "finished",
        "epochs": tr.epoch,
        "steps": tr.step,
        "world_size": tr.comm.size,
        "data_parallel_size": tr.data_comm.size,
        "global_batch": tr.global_batch,
        "wall_time_s": wall,
        "samples_per_s": tr.samples_trained / wall if wall > 0 else 0.0,
        "bytes_on_wire": tr.exchange.stats.wire_bytes,
        "device": str(tr.placement.device),
        "exchange": tr.cfg.exchange,
        "data_fingerprint": tr.data.fingerprint,
        "resumed_from": tr.state.resumed_from,
        "changed_on_resume": tr.state.changed_on_resume,
        "config": tr.cfg.to_dict(),
    }
