"""Seed notes In [1]: a variable and a constant pinned to /cpu:0, their product printed.

python examples/seed/device_placement.py
"""

import numpy as np

import hpcdist

placement = hpcdist.pin_device("/cpu:0", threads=1)  # place this rank's arrays on the CPU
xp = placement.xp  # numpy here; cupy on a GPU rank
a = xp.asarray(3.0, dtype=np.float32)  # the "variable", initialised
b = xp.asarray(4.0, dtype=np.float32)  # the "constant"
print(float(a * b))
