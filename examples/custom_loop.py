"""A training loop of your own from hpcdist's parts: pipeline, model, exchange, optimizer.

mpirun -n 2 python examples/custom_loop.py
"""

import numpy as np

import hpcdist
from hpcdist import datasets, nn
from hpcdist.data import HDF5Source, InputPipeline

info = hpcdist.init()
comm = hpcdist.runtime.world_comm()
data = datasets.digits()  # train/ and val/ HDF5 shards, written once by rank 0
pipe = InputPipeline(HDF5Source(str(data / "train")), batch_size=32, seed=0, comm=comm)
model = nn.mlp([64, 64, 10], seed=0)
params = model.parameters()
with hpcdist.AllreduceExchange(comm=comm) as exchange:
    exchange.attach(params)  # each p.grad is now a view into the exchange's buckets
    exchange.broadcast_parameters([p.data for p in params])  # start from rank 0's
    opt = nn.Momentum(params, lr=0.05)
    for epoch in range(5):
        losses = []
        for x, y in pipe.epoch(epoch):  # same number of steps on every rank
            loss, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
            model.backward(dlogits, input_grad=False)
            exchange.synchronize()  # gradients now averaged over the ranks, in place
            opt.step()
            losses.append(float(loss))
        mean = comm.allreduce(np.mean(losses)) / comm.size
        if info.is_root:
            print(f"epoch {epoch}: mean train loss over ranks {mean:.4f}")
pipe.close()
