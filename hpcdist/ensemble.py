"""Ensembles: `mpirun -n N python -m hpcdist.ensemble --search-dir D [--top-k 3] [--voting soft]`.

The members (the best --top-k trials of a search, from D/top.json, or files
given with --members: checkpoints or int8 files) are spread over the ranks,
each rank computing its members' class probabilities on its own device;
rank 0 gathers them and votes as scikit-learn's VotingClassifier does:

- soft: argmax of the weighted mean of the members' probabilities;
- hard: argmax of the weighted count of the members' labels;

in both, a tie goes to the lowest class (numpy's argmax takes the first).
Prints each member's validation accuracy, the ensemble's and how often the
members disagree; writes D/ensemble.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import devices, inference, runtime
from .errors import CheckpointError
from .guard import Guard


def soft_vote(probas: np.ndarray, weights=None) -> np.ndarray:
    """Labels (N,) from probas (M members, N samples, C classes): argmax of the weighted mean."""
    probas = np.asarray(probas)
    return np.average(probas, axis=0, weights=_weights(weights, len(probas))).argmax(axis=1)


def hard_vote(labels: np.ndarray, num_classes: int, weights=None) -> np.ndarray:
    """Labels (N,) from labels (M, N): argmax of the weighted count per class (ties: lowest)."""
    labels = np.asarray(labels)
    w = _weights(weights, len(labels))
    w = np.ones(len(labels)) if w is None else w
    counts = np.zeros((labels.shape[1], num_classes))
    rows = np.arange(labels.shape[1])
    for m, member in enumerate(labels):
        np.add.at(counts, (rows, member), w[m])
    return counts.argmax(axis=1)


def disagreement(labels: np.ndarray) -> tuple[float, float]:
    """(share of samples the members do not all agree on, mean pairwise disagreement)."""
    labels = np.asarray(labels)
    m = len(labels)
    if m < 2:
        return 0.0, 0.0
    some = float(np.mean((labels != labels[0]).any(axis=0)))
    pairs = [np.mean(labels[i] != labels[j]) for i in range(m) for j in range(i + 1, m)]
    return some, float(np.mean(pairs))


def _weights(weights, m: int):
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (m,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"--weights: want {m} non-negative numbers, not all 0, got {list(w)}")
    return w


def members_of(args) -> list[tuple[str, Path]]:
    """[(name, model file)] from --members or the top of --search-dir's top.json."""
    if args.members:
        return [(str(p), Path(p)) for p in args.members]
    top = Path(args.search_dir) / "top.json"
    if not top.is_file():
        raise ValueError(
            f"{top} not found: run python -m hpcdist.search --run-dir {args.search_dir}"
        )
    entries = json.loads(top.read_text())[: args.top_k]
    if not entries:
        raise ValueError(f"{top} lists no finished trial")
    return [(e["trial"], Path(args.search_dir) / e["checkpoint"]) for e in entries]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.ensemble", description=__doc__.split("\n")[0]
    )
    p.add_argument("--search-dir", help="a search directory (its top.json)")
    p.add_argument("--members", nargs="+", help="checkpoint or int8 files instead of a search")
    p.add_argument("--top-k", type=int, default=3, help="members taken from top.json")
    p.add_argument("--voting", default="soft", choices=("soft", "hard"))
    p.add_argument("--weights", help="one weight per member, e.g. 2,1,1")
    p.add_argument("--data", help="a data directory; default: the members' own")
    p.add_argument("--split", default="val")
    p.add_argument("--output", help="where ensemble.json goes (default: in --search-dir)")
    return p


def _load_rank_members(members, rank: int, size: int, xp, args):
    """This rank's members' (index, probabilities, fingerprint) and the data's targets."""
    out, targets = [], None
    for i in range(rank, len(members), size):
        model = inference.load_model(members[i][1], xp)
        directory = Path(args.data) if args.data else model.data_directory()
        x, targets = inference.split_arrays(directory, args.split)
        out.append((i, inference.probabilities(model.net, x), model.fingerprint))
    return out, targets


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    info = runtime.init()
    guard = Guard(runtime.world_comm(), name="ensemble")
    xp = devices.pin_device("auto").xp
    error, mine, targets, members = None, [], None, []
    try:
        if bool(args.members) == bool(args.search_dir):
            raise ValueError("give either --search-dir or --members")
        members = members_of(args)
        weights = None if not args.weights else [float(w) for w in args.weights.split(",")]
        _weights(weights, len(members))
        mine, targets = _load_rank_members(members, info.rank, info.size, xp, args)
    except (ValueError, CheckpointError, FileNotFoundError) as exc:
        error = f"rank {info.rank}: {exc}"
    if inference.refused(guard, error, "every rank's members", "hpcdist.ensemble"):
        return 2
    gathered = guard.gather((mine, targets), what="the members' probabilities")
    if info.is_root:
        return report(args, members, weights, gathered)
    return 0


def report(args, members, weights, gathered) -> int:
    """Rank 0: vote, print the table, write ensemble.json."""
    parts = sorted((p for rank_parts, _ in gathered for p in rank_parts), key=lambda p: p[0])
    targets = next(t for _, t in gathered if t is not None)
    prints = {f for _, _, f in parts if f is not None}
    if len(prints) > 1:
        print(
            f"hpcdist.ensemble: error: members trained on other data sets {prints}", file=sys.stderr
        )
        return 2
    probas = np.stack([p for _, p, _ in parts])
    labels = probas.argmax(axis=2)
    if args.voting == "soft":
        voted = soft_vote(probas, weights)
    else:
        voted = hard_vote(labels, probas.shape[2], weights)
    accs = [float(np.mean(lab == targets)) for lab in labels]
    acc = float(np.mean(voted == targets))
    some, pairwise = disagreement(labels)
    width = max(len("ensemble (" + args.voting + ")"), *(len(name) for name, _ in members))
    print(f"{'member':<{width}}  {args.split}_accuracy")
    for (name, _), a in zip(members, accs, strict=True):
        print(f"{name:<{width}}  {a:.4f}")
    print(f"{'ensemble (' + args.voting + ')':<{width}}  {acc:.4f}")
    print(f"members disagree on {100 * some:.1f}% of the samples (pairwise {100 * pairwise:.1f}%)")
    doc = {
        "members": [
            {"trial": n, "val_accuracy": a, "checkpoint": str(p)}
            for (n, p), a in zip(members, accs, strict=True)
        ],
        "voting": args.voting,
        "weights": weights,
        "ensemble_val_accuracy": acc,
        "disagreement": some,
        "pairwise_disagreement": pairwise,
    }
    out = Path(args.output) if args.output else Path(args.search_dir or ".") / "ensemble.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"hpcdist.ensemble: wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
