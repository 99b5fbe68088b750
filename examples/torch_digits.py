"""A small PyTorch CNN trained on the 8x8 digits through hpcdist.torch.

mpirun -n 4 python examples/torch_digits.py            # batch 16 per rank, 64 in all

Gradients live in hpcdist's exchange buffers and are averaged during backward;
every rank ends with the same parameters, bit for bit. `--out PREFIX` writes
PREFIX.rankN.json per rank (accuracy, a digest of the parameters), which
tests/test_torch.py compares with torch alone on one rank.
"""

import argparse
import hashlib
import json

import numpy as np
import torch

import hpcdist
import hpcdist.torch as hdt
from hpcdist import datasets
from hpcdist.data import HDF5Source, InputPipeline


class DigitsCNN(torch.nn.Module):
    """conv 3x3 (16) -> pool -> conv 3x3 (32) -> pool -> linear 128 -> 10, on 1x8x8 images."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(32 * 2 * 2, 10),
        )

    def forward(self, x):
        return self.body(x.reshape(-1, 1, 8, 8))


def read_all(directory) -> tuple[torch.Tensor, torch.Tensor]:
    """Every record of a shard directory, in file order."""
    src = HDF5Source(str(directory))
    parts = [src.read(i, 0, n) for i, n in enumerate(src.counts) if n]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x), torch.from_numpy(y)


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def digest(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + t.detach().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=16, help="per rank")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", default="", help="write PREFIX.rankN.json per rank")
    args = p.parse_args()
    torch.set_num_threads(1)  # one core per rank
    info = hpcdist.init()
    comm = hpcdist.runtime.world_comm()
    data = datasets.digits()  # train/ and val/ HDF5 shards, written once (per node if needed)
    pipe = InputPipeline(HDF5Source(str(data / "train")), batch_size=args.batch, seed=0, comm=comm)
    torch.manual_seed(0)
    model = DigitsCNN()
    # Attaches the gradients to the exchange, hooks backward, broadcasts rank 0's
    # parameters and optimizer state.
    opt = hdt.DistributedOptimizer(torch.optim.Adam(model.parameters(), args.lr), model=model)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt.optimizer, T_max=args.epochs)
    loss_fn = torch.nn.CrossEntropyLoss()
    val_x, val_y = read_all(data / "val")
    for epoch in range(args.epochs):
        losses = []
        for x, y in pipe.epoch(epoch):  # the same number of steps on every rank
            opt.zero_grad()
            loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
            loss.backward()  # each finished gradient starts its bucket's allreduce
            opt.step()  # wait for the average, then Adam's update
            losses.append(loss.item())
        sched.step()
        acc = accuracy(model, val_x, val_y)
        if info.is_root:
            print(f"epoch {epoch}: rank 0 train loss {np.mean(losses):.4f}, val accuracy {acc:.4f}")
    pipe.close()
    if args.out:
        facts = {"rank": info.rank, "size": info.size, "accuracy": acc, "digest": digest(model)}
        with open(f"{args.out}.rank{info.rank}.json", "w") as f:
            json.dump(facts, f)
    opt.close()


if __name__ == "__main__":
    main()
