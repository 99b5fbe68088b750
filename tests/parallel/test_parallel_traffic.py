"""A split model counts the bytes its activations put on the wire in training, not in evaluation."""

import pytest
from parallel_data import DEEP, UNEVEN, batch, net

from hpcdist import TrainConfig, nn, parallel
from hpcdist.guard import Guard
from hpcdist.parallel import traffic


def ring(nbytes: int, p: int) -> int:
    """What one rank sends in a ring allreduce: 2 (p - 1) / p of the buffer."""
    return 2 * (p - 1) * nbytes // p


@pytest.fixture
def guard(comm):
    g = Guard(comm, 60, name="test")
    yield g
    g.free()


@pytest.mark.mpi
def test_tensor_split_counts_each_activation_allreduce(guard):
    x, y = batch(n=13)
    part = parallel.tensor_split(net(UNEVEN), guard)  # column, row, column (gathered)
    _, dlogits = nn.softmax_cross_entropy(part.forward(x), y)
    part.backward(dlogits, input_grad=False)
    p, f8 = guard.size, 8
    # forward: the row layer's 13x50 partial products, the last column layer's 13x10 output;
    # backward: the last column layer's 13x50 input gradient (the first layer's is not needed)
    expected = ring(13 * 50 * f8, p) + ring(13 * 10 * f8, p) + ring(13 * 50 * f8, p)
    assert traffic.total(part) == expected
    part.eval()
    part.forward(x)  # evaluation is not training traffic
    assert traffic.total(part) == expected


@pytest.mark.mpi
def test_pipeline_stage_counts_its_sends(guard):
    x, y = batch(n=13)
    stage = parallel.PipelineModel(net(DEEP), guard, micro_batches=4, timeout=60)
    stage.train_batch(x, y)
    widths = (stage.in_width, stage.out_width)
    micro = parallel.split_sizes(13, 4)
    sent = 0
    if stage.stage < guard.size - 1:  # activations forward
        sent += sum(m * widths[1] * 8 for m in micro)
    if stage.stage > 0:  # their gradients back
        sent += sum(m * widths[0] * 8 for m in micro)
    assert traffic.total(stage) == sent + ring(8, guard.size)  # and the batch loss
    stage.eval()
    stage.forward(x)
    assert traffic.total(stage) == sent + ring(8, guard.size)


@pytest.mark.mpi
def test_the_model_parallel_exchange_reports_activations_in_its_wire_bytes(comm):
    cfg = TrainConfig(model_parallel="tensor", mp_size=comm.size, timeout=60)
    layout = parallel.Layout2D(comm, comm.size)
    model, exchange = parallel.split_for_training(cfg, net(UNEVEN), layout)
    try:
        x, y = batch(n=13)
        _, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits, input_grad=False)
        counted = traffic.total(model)
        assert counted > 0 if comm.size > 1 else counted == 0
        assert exchange.stats.wire_bytes == exchange.inner.stats.wire_bytes + counted
    finally:
        exchange.close()
