"""Roles: spec resolution, task names, sub-communicators, errors."""

import argparse

import pytest

import hpcdist
from hpcdist import cluster
from hpcdist.cluster import ClusterSpec
from hpcdist.errors import ClusterSpecError


def parse(*flags):
    p = argparse.ArgumentParser()
    cluster.add_arguments(p)
    return ClusterSpec.from_args(p.parse_args(list(flags)))


def test_counts_fill_workers_with_the_rest():
    jobs = ClusterSpec({"ps": 2, "worker": None}).resolve([0] * 8)
    assert jobs == {"ps": [0, 1], "worker": [2, 3, 4, 5, 6, 7]}


def test_ps_spread_across_nodes():
    nodes = [0, 0, 0, 0, 1, 1, 1, 1]
    jobs = ClusterSpec({"ps": 2, "worker": 6}).resolve(nodes)
    assert jobs["ps"] == [0, 4]  # one per node, not packed on node 0
    assert jobs["worker"] == [1, 2, 3, 5, 6, 7]
    three = ClusterSpec({"ps": 3, "worker": None}).resolve(nodes)
    assert three["ps"] == [0, 1, 4]


def test_explicit_rank_lists_and_chief_evaluator():
    spec = ClusterSpec({"ps": [3], "chief": 1, "worker": 2, "evaluator": [0]})
    assert spec.resolve([0] * 5) == {"chief": [1], "ps": [3], "worker": [2, 4], "evaluator": [0]}


def test_flags():
    assert parse("--ps", "2").resolve([0] * 4) == {"ps": [0, 1], "worker": [2, 3]}
    assert parse("--ps", "1", "--chief", "--evaluator", "1").resolve([0] * 4) == {
        "chief": [1],
        "ps": [0],
        "worker": [2],
        "evaluator": [3],
    }
    assert parse("--cluster", '{"ps": [0], "worker": [1]}').resolve([0, 0]) == {
        "ps": [0],
        "worker": [1],
    }


@pytest.mark.parametrize(
    "jobs, size, message",
    [
        ({"ps": 1, "worker": 4}, 4, "asks for 5 roles"),
        ({"ps": 5}, 4, "asks for 5 roles"),
        ({"ps": 1, "trainer": 2}, 4, "unknown job name(s) ['trainer']"),
        ({"ps": [0, 1], "worker": [1, 2, 3]}, 4, "rank 1 is in two jobs"),
        ({"ps": [7], "worker": None}, 4, "names rank 7"),
        ({"ps": 1, "worker": 1}, 4, "ranks [2, 3] have no job"),
        ({"ps": -1}, 4, "count must be an int >= 0"),
        ({"ps": None}, 4, "needs a count or a rank list"),
    ],
)
def test_bad_specs(jobs, size, message):
    with pytest.raises(ClusterSpecError) as e:
        ClusterSpec(jobs).resolve([0] * size)
    assert message in str(e.value)


def test_bad_json_flag():
    with pytest.raises(ClusterSpecError, match="not valid JSON"):
        parse("--cluster", "{ps: 1}")


def test_task_names():
    assert cluster.Task("worker", 3, 7).name == "/job:worker/task:3"
    assert str(cluster.Task("ps", 0, 0)) == "/job:ps/task:0"


@pytest.mark.mpi
def test_cluster_on_world(comm):
    n_ps = 1 if comm.size > 1 else 0
    roles = hpcdist.Cluster(ClusterSpec({"ps": n_ps, "worker": None}))
    expected_job = "ps" if comm.rank < n_ps else "worker"
    assert roles.task.job == expected_job
    assert roles.task.index == (comm.rank if expected_job == "ps" else comm.rank - n_ps)
    assert roles.task.rank == comm.rank
    # Each job's sub-communicator holds exactly that job's ranks, in task order.
    members = roles.job_comm.allgather(comm.rank)
    assert members == roles.ranks(expected_job)
    assert roles.job_comm.rank == roles.task.index
    # Every rank sees the same table.
    assert (
        comm.allgather([t.name for t in roles.tasks]) == [[t.name for t in roles.tasks]] * comm.size
    )
    assert roles.num_tasks("worker") == comm.size - n_ps
