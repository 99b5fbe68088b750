"""How the trainer drives a split model: the model-parallel exchange and the split itself.

    layout = Layout2D(roles.job_comm, cfg.mp_size)
    model, exchange = split_for_training(cfg, net, layout)   # net: the unsplit model

The exchange (`updates = "sharded"`) owns this rank's slice of the model:
its gradients are averaged over the replicas (an AllreduceExchange on
layout.dp_comm), the trainer's optimizer steps the slice, and a checkpoint
gets the slice as Shards of the whole arrays, so a split run writes the
usual `params/` and `optimizer/` layout (replica 0's primary copies speak
for each piece) and reads the whole arrays back into its slice.
"""

from __future__ import annotations

import dataclasses

from ..ckptfile import Shard
from ..exchange.allreduce import AllreduceExchange
from ..exchange.base import Exchange, ExchangeStats, SyncInfo
from .layout import Layout2D
from .pipeline import PipelineModel
from .tensor import split as tensor_split
from .traffic import total as traffic_total

#: Checkpoint groups a model-parallel rank holds a slice of.
SHARDED_GROUPS = ("params", "optimizer")


class ModelParallelExchange(Exchange):
    """This rank's pieces of the model, their gradients averaged over the replicas."""

    updates = "sharded"

    def __init__(self, pieces: list, layout: Layout2D, inner: Exchange, model=None):
        self.pieces, self.layout, self.inner = list(pieces), layout, inner
        self.model = model  # its activation traffic counts in stats.wire_bytes
        self.by_name = {pc.param.name: pc for pc in self.pieces}

    @classmethod
    def from_config(cls, roles, config):
        raise TypeError(
            "the model-parallel exchange is built with its split model: set --model-parallel "
            "tensor|pipeline instead of naming it as --exchange"
        )

    # --- the exchange: the replicas' average of each piece --------------------
    def attach(self, params: list) -> list:
        return self.inner.attach(params)

    def gradient_ready(self, i: int) -> None:
        self.inner.gradient_ready(i)

    def start(self) -> None:
        self.inner.start()

    def progress(self) -> bool:
        return self.inner.progress()

    @property
    def done(self) -> bool:
        return self.inner.done

    def synchronize(self) -> SyncInfo:
        return self.inner.synchronize()

    def broadcast_parameters(self, arrays: list, root: int = 0) -> None:
        self.inner.broadcast_parameters(arrays, root=root)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    @property
    def stats(self) -> ExchangeStats:
        """The replicas' gradient exchange, plus the split model's activations in wire_bytes."""
        if self.model is None:
            return self.inner.stats
        st = self.inner.stats
        return dataclasses.replace(st, wire_bytes=st.wire_bytes + traffic_total(self.model))

    def close(self) -> None:
        self.inner.close()
        self.layout.free()

    # --- checkpoints: slices of the whole arrays -------------------------------
    def _piece_of(self, group: str, name: str):
        """(piece, whole name) of a checkpoint entry ('0.weight', 'velocity.3')."""
        if group == "params":
            return self.by_name[name], name
        slot, _, i = name.rpartition(".")
        piece = self.pieces[int(i)]
        return piece, f"{slot}.{piece.position}"

    def shards(self, arrays: dict) -> tuple[dict, list[Shard]]:
        """(the groups left whole, this rank's Shards of params/ and optimizer/)."""
        kept = {g: d for g, d in arrays.items() if g not in SHARDED_GROUPS}
        out = []
        if self.layout.replica != 0:
            return kept, out
        for group in SHARDED_GROUPS:
            for name, data in arrays.get(group, {}).items():
                piece, whole = self._piece_of(group, name)
                if piece.primary:
                    out.append(piece.shard(group, whole, data))
        return kept, out

    def whole_spec(self, arrays: dict) -> dict:
        """{"params": {name: (whole shape, dtype)}}: what a checkpoint of this model holds."""
        out = {}
        for name, data in arrays["params"].items():
            out[name] = (self.by_name[name].shape, data.dtype.str)
        return {"params": out}

    def localize(self, groups: dict) -> dict:
        """A checkpoint's groups with params/ and optimizer/ cut to this rank's slices."""
        local = dict(groups)
        local["params"] = {
            pc.param.name: groups["params"][pc.param.name][pc.slices()] for pc in self.pieces
        }
        opt = {}
        for name, whole in groups.get("optimizer", {}).items():
            slot, _, i = name.rpartition(".")
            for k, pc in enumerate(self.pieces):
                if int(i) == pc.position:
                    opt[f"{slot}.{k}"] = whole[pc.slices()]
        local["optimizer"] = opt
        return local


def split_for_training(cfg, net, layout: Layout2D):
    """(this rank's part of `net`, its ModelParallelExchange) for cfg.model_parallel."""
    if cfg.exchange != "allreduce" or cfg.error_feedback:
        raise ValueError(
            f"--model-parallel {cfg.model_parallel} averages each slice over the replicas with "
            f"the allreduce exchange, without --error-feedback (got --exchange {cfg.exchange}"
            f"{', --error-feedback' if cfg.error_feedback else ''})"
        )
    if cfg.model_parallel == "tensor":
        model = tensor_split(net, layout.mp_guard)
    elif cfg.model_parallel == "pipeline":
        if cfg.micro_batches > cfg.batch_size:
            raise ValueError(
                f"--micro-batches {cfg.micro_batches} is more than --batch-size "
                f"{cfg.batch_size}: every micro-batch needs at least one sample"
            )
        model = PipelineModel(
            net,
            layout.mp_guard,
            micro_batches=cfg.micro_batches,
            schedule=cfg.pipeline_schedule,
            timeout=cfg.timeout,
        )
    else:
        raise ValueError(
            f"model_parallel must be 'tensor' or 'pipeline', got {cfg.model_parallel!r}"
        )
    inner = AllreduceExchange(
        layout.dp_comm,
        compression=cfg.compression,
        bucket_bytes=cfg.bucket_bytes,
        timeout=cfg.timeout,
    )
    return model, ModelParallelExchange(model.pieces(), layout, inner, model=model)
