"""Placement report: `mpirun -n 4 python -m hpcdist.placement --ps 1 --log-device-placement`."""

from __future__ import annotations

import argparse

from . import cluster, devices, runtime


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.placement",
        description="Assign roles to the MPI ranks, pin each to a device and report it.",
    )
    cluster.add_arguments(p)
    add_device_arguments(p)
    return p


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """Add --device, --strict-placement, --gpu-memory-fraction, --log-device-placement."""
    g = p.add_argument_group("devices")
    g.add_argument(
        "--device",
        default="auto",
        help="auto (GPU by local rank if cupy sees one, else CPU), cpu, gpu, or a device "
        "string such as /gpu:0 (default auto)",
    )
    g.add_argument(
        "--strict-placement",
        action="store_true",
        help="fail instead of falling back to the CPU when a GPU is asked for but missing",
    )
    g.add_argument(
        "--gpu-memory-fraction",
        type=float,
        default=None,
        metavar="F",
        help="cap each rank's cupy memory pool at this fraction of its GPU "
        "(default: an equal share when several ranks use one GPU, else grow on demand)",
    )
    g.add_argument(
        "--log-device-placement",
        action="store_true",
        help="print one line per rank: rank, host, job/task and device",
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    info = runtime.init()
    roles = cluster.Cluster(cluster.ClusterSpec.from_args(args))
    placement = devices.pin_device(
        args.device,
        task=roles.task,
        strict=args.strict_placement,
        memory_fraction=args.gpu_memory_fraction,
    )
    if args.log_device_placement:
        devices.log_device_placement(info, roles.task, placement)
    elif info.is_root:
        print(f"hpcdist: {info.size} rank(s) on {info.num_nodes} node(s)\n{roles.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
