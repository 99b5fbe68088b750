"""Seed notes In [2]: z = x + y, evaluated only after a and b.

python examples/seed/control_dependencies.py

hpcdist runs eagerly, so there is no graph whose order needs control
dependencies: statements run in the order written, which is the dependency.
"""

import numpy as np

a = np.float32(1.0)
b = a + np.float32(2.0)  # b depends on a; both are computed before x and y
x = np.float32(3.0)
y = np.float32(4.0)
z = x + y  # evaluated after x and y
print(z)
