"""PCG64 generator state as 6 uint64 words: the one packing, storable in HDF5 without pickles.

    words = state_words(rng)          # [state hi, state lo, inc hi, inc lo, has_uint32, uinteger]
    set_state_words(rng, words)       # rng continues exactly where `words` was taken
    rng = from_words(words)           # a new Generator in that state

Used by the input pipeline (shuffle state in its state_dict) and by
`nn.Dropout` (mask state in Module.state_dict()).
"""

from __future__ import annotations

import numpy as np

#: Length of a packed state.
WORDS = 6
_MASK = (1 << 64) - 1


def state_words(rng: np.random.Generator) -> np.ndarray:
    """The state of a PCG64-backed Generator as 6 uint64 words."""
    st = rng.bit_generator.state
    if st.get("bit_generator") != "PCG64":
        raise TypeError(f"state_words needs a PCG64 generator, got {st.get('bit_generator')!r}")
    s, inc = st["state"]["state"], st["state"]["inc"]
    words = [s >> 64, s & _MASK, inc >> 64, inc & _MASK, st["has_uint32"], st["uinteger"]]
    return np.array(words, dtype=np.uint64)


def set_state_words(rng: np.random.Generator, words) -> None:
    """Put a PCG64-backed Generator in the state `words` (from state_words) describe."""
    w = np.asarray(words)
    if w.shape != (WORDS,) or w.dtype.kind not in "ui":
        raise ValueError(f"a PCG64 state is {WORDS} uint64 words, got {w.dtype} {w.shape}")
    w = [int(x) for x in w.astype(np.uint64)]
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
        "has_uint32": w[4],
        "uinteger": w[5],
    }


def from_words(words) -> np.random.Generator:
    """A new PCG64 Generator in the state `words` describe."""
    rng = np.random.Generator(np.random.PCG64())
    set_state_words(rng, words)
    return rng
