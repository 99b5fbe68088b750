"""The ps exchanges' boundary: settings, registry, roles, the RemoteOptimizer's refusals."""

import warnings

import numpy as np
import pytest

from hpcdist import cluster, devices, nn
from hpcdist.config import TrainConfig, validate
from hpcdist.errors import ExchangeError
from hpcdist.exchange import registry
from hpcdist.ps import PsAsyncExchange, PsSyncExchange
from hpcdist.ps.remote import RemoteOptimizer
from hpcdist.ps.staleness import AsyncRule


def test_the_exchanges_are_registered_by_name():
    assert registry.get("ps-sync") is PsSyncExchange
    assert registry.get("ps-async") is PsAsyncExchange


def test_ps_tasks_and_a_ps_exchange_go_together():
    with pytest.raises(ValueError, match="needs parameter-server tasks: add --ps N"):
        validate(TrainConfig(exchange="ps-sync"))
    with pytest.raises(ValueError, match="add --exchange ps-sync or ps-async"):
        validate(TrainConfig(ps=1))
    with pytest.raises(ValueError, match="staleness_policy"):
        validate(TrainConfig(ps=1, exchange="ps-async", staleness_policy="sometimes"))
    validate(TrainConfig(ps=2, exchange="ps-async", staleness=0, staleness_policy="dc"))


def test_an_exchange_without_ps_tasks_is_refused(comm):
    roles = cluster.Cluster(cluster.ClusterSpec({"worker": None}))
    with pytest.raises(ExchangeError, match="needs ps and worker tasks"):
        PsSyncExchange(roles)


def test_bad_async_settings_are_named():
    with pytest.raises(ValueError, match="staleness policy must be one of"):
        AsyncRule(2, "sometimes")
    with pytest.raises(ValueError, match="staleness must be >= 0"):
        AsyncRule(-1)


class _Exchange:
    """What a RemoteOptimizer asks of its exchange, recorded."""

    def __init__(self):
        self.dirty, self.fetched = 0, 0

    def mark_dirty(self):
        self.dirty += 1

    def current_lr(self):
        return 0.125

    def fetch_optimizer_state(self, local):
        self.fetched += 1
        local.state["velocity"][0][...] = 7.0
        local.steps = 3


def test_the_remote_optimizer_holds_the_ps_state_and_refuses_to_step():
    params = [nn.Parameter("w", np.zeros(4, np.float32))]
    local = nn.Momentum(params, 0.1, momentum=0.9)
    ex = _Exchange()
    opt = RemoteOptimizer(local, ex)
    with pytest.raises(TypeError, match="parameter servers apply the update"):
        opt.step()
    assert opt.lr == 0.125
    state = opt.state_dict()  # gathered from the ps: the layout an allreduce run writes
    assert ex.fetched == 1 and state["steps"] == 3 and state["kind"] == "Momentum"
    np.testing.assert_array_equal(state["velocity.0"], np.full(4, 7.0, np.float32))
    opt.momentum = 0.5  # a changed setting goes to the ps with the state
    assert local.momentum == 0.5 and ex.dirty == 1
    opt.load_state_dict(state)
    assert ex.dirty == 2 and local.steps == 3


def test_a_device_string_naming_another_task_is_said_not_rewritten_silently():
    me = cluster.Task("worker", 0, 0)
    with pytest.warns(RuntimeWarning, match="names another task than this rank's"):
        placed = devices.pin_device("/job:ps/task:1/cpu:0", task=me, threads=1)
    assert str(placed.device) == "/job:worker/task:0/cpu:0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        devices.pin_device("/job:worker/cpu:0", task=me, threads=1)  # its own job: quiet
