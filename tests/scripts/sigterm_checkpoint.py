"""Wait for SIGTERM, then 'checkpoint' (write a file) and exit 0 on every rank."""

import sys
import time
from pathlib import Path

import hpcdist

hpcdist.init()
flag = hpcdist.catch_preemption()
Path(sys.argv[1], f"ready.{hpcdist.rank()}").touch()
deadline = time.monotonic() + 30
while not flag.requested and time.monotonic() < deadline:
    time.sleep(0.05)
Path(sys.argv[1], f"saved.{hpcdist.rank()}").write_text(str(flag.signal_name))
