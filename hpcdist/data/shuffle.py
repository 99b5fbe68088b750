"""The pick-from-oldest shuffle: one rule for the shuffle queue, the ring and its simulation."""

from __future__ import annotations

import numpy as np

from ..rng import from_words, state_words


def epoch_rng(seed: int, epoch: int, rank: int) -> np.random.Generator:
    """The generator of one rank's shuffle in one epoch (InputPipeline's every read path)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, rank, 0x5B0F])))


def drop_picked(order: np.ndarray, count: int, pick: np.ndarray) -> int:
    """Remove positions `pick` from order[:count] in place, keeping the others' order; new count."""
    keep = np.ones(count, dtype=bool)
    keep[pick] = False
    left = count - len(pick)
    order[:left] = order[:count][keep]
    return left


class PickFromOldest:
    """A take of n picks n elements at random among the oldest `window + n`.

    The rest keep their arrival order (`drop_picked`), so what comes out
    depends only on the seed and the arrival order, never on how far the
    producers ran ahead. `window=None` looks at every element (TF's
    RandomShuffleQueue). The one RNG call is `rng.choice(w, size=n,
    replace=False)` with w = min(count, window + n), and none when n == 0:
    the queue, the shuffle ring and the simulation of the one-copy path make
    exactly this call, so they give the same batches and resume exactly from
    `words()`.
    """

    def __init__(self, window: int | None, rng: np.random.Generator):
        self.window, self.rng = window, rng

    def span(self, count: int, n: int) -> int:
        """How many of the oldest `count` elements a take of n looks at."""
        return count if self.window is None else min(count, self.window + n)

    def choose(self, count: int, n: int) -> np.ndarray:
        """Positions (among the oldest) of the min(n, span) elements picked, in slot order."""
        w = self.span(count, n)
        n = min(n, w)
        return self.rng.choice(w, size=n, replace=False) if n else np.zeros(0, np.int64)

    def take(self, order: np.ndarray, count: int, n: int) -> tuple[np.ndarray, int, int]:
        """Pick from order[:count] and drop the picks in place: (picked values, span, new count)."""
        w = self.span(count, n)
        pick = self.choose(count, n)
        got = order[pick]
        return got, w, drop_picked(order, count, pick)

    def words(self) -> np.ndarray:
        """The RNG state (6 uint64 words, `hpcdist.rng`)."""
        return state_words(self.rng)

    @staticmethod
    def replay(words, spans, n: int) -> np.ndarray:
        """The RNG words after takes of n over `spans` (each take's span), starting at `words`."""
        rule = PickFromOldest(None, from_words(words))
        for w in spans:
            rule.choose(int(w), n)
        return rule.words()
