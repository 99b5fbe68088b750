"""Turns: every rank posts in bucket order; 16-bit second rounds are pipelined, and polled."""

from hpcdist.exchange.mpi import Turns


class FakeTwoRound:
    """Stands in for a 16-bit MpiSum: records when its rounds are posted."""

    def __init__(self, key, log, gather_comm="gather"):
        self.key, self.log, self.gather_comm = key, log, gather_comm
        self.single_round = False
        self.gate = self.passed = None
        self.stage, self.polls = 0, 0
        self.first_done = False  # set by the test: the first round's requests completed

    def start(self):
        self.log.append(("scatter", self.key))
        self.stage = 1

    def progress(self):
        self.polls += 1
        if self.stage == 1 and self.first_done:
            if self.gate is not None and not self.gate():
                return False
            self.log.append(("gather", self.key))
            if self.passed is not None:
                self.passed()
            self.stage = 2
            return False
        return self.stage == 2


def _drive(gens, rounds):
    for _ in range(rounds):
        for k in list(gens):
            try:
                next(gens[k])
            except StopIteration:
                del gens[k]


def test_next_buckets_first_round_goes_out_while_the_gather_waits_its_turn():
    log, turns = [], Turns()
    turns.reset([0, 1, 2])
    ops = {k: FakeTwoRound(k, log) for k in range(3)}
    gens = {k: turns.run(k, ops[k], ("wait", k)) for k in range(3)}
    _drive(gens, 2)
    # every first round is out at once: bucket 0's gather did not hold the turn
    assert [e for e in log if e[0] == "scatter"] == [("scatter", 0), ("scatter", 1), ("scatter", 2)]
    ops[2].first_done = ops[1].first_done = True  # later buckets finish their first round first
    _drive(gens, 3)
    assert not [e for e in log if e[0] == "gather"]  # gathers wait for bucket 0's, in order
    assert ops[2].polls >= 3  # ... but each op is polled on every pass
    ops[0].first_done = True
    _drive(gens, 4)
    assert [e for e in log if e[0] == "gather"] == [("gather", 0), ("gather", 1), ("gather", 2)]
    assert not gens


def test_without_a_gather_communicator_the_turn_is_held_to_the_end():
    log, turns = [], Turns()
    turns.reset([0, 1])
    ops = {k: FakeTwoRound(k, log, gather_comm=None) for k in range(2)}
    gens = {k: turns.run(k, ops[k], ("wait", k)) for k in range(2)}
    _drive(gens, 2)
    assert log == [("scatter", 0)]  # bucket 1 waits: one communicator, one op at a time
    ops[0].first_done = True
    _drive(gens, 3)
    assert log[:3] == [("scatter", 0), ("gather", 0), ("scatter", 1)]
