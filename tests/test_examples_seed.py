"""The seed notes' printing cells, written with hpcdist (examples/seed/), print what the notes do.

Each expected block is the notes' printed output, copied; where hpcdist differs
on purpose the example says why and the line is marked here (a record default,
-1., where TF 1 printed garbage). When the notes are at hand (../shared/seed/),
every unmarked line is checked to be in them, so the copies stay faithful.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from launch import ROOT, clean_env, run_mpi

EXAMPLES = Path(ROOT) / "examples" / "seed"
NOTES = sorted((Path(ROOT).parent / "shared" / "seed").glob("*.txt"))
GARBAGE = "-1.28134154e-20"  # what TF 1 printed for the missing field

#: example -> (the notes' cell, its printed lines; a line ending "# default" differs on purpose)
CELLS = {
    "device_placement.py": ("In [1]", ["12.0"]),
    "control_dependencies.py": ("In [2]", ["7.0"]),
    "csv_shuffle_queue.py": (
        "In [5]",
        [
            "No more files to read",
            "[array([[4., 5.],",
            "       [1., 2.]], dtype=float32), array([1, 0], dtype=int32)]",
            "[array([[ 7., -1.]], dtype=float32), array([0], dtype=int32)]  # default",
            "No more training instances",
        ],
    ),
    "text_line_dataset.py": (
        "In [7]",
        ["[1. 2.] 0.0", "[4. 5.] 1.0", "[ 7. -1.] 0.0  # default", "Done"],
    ),
    "queue_timeout.py": (
        "In [8]",
        ["2.0", "6.0", "3.0", "4.0", "Timed out while dequeuing."],
    ),
}


def expected(name: str) -> list[str]:
    return [ln.split("  # default")[0] for ln in CELLS[name][1]]


def run(name: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


@pytest.mark.parametrize("name", list(CELLS))
def test_example_prints_the_notes_lines(name):
    assert run(name) == expected(name)


@pytest.mark.skipif(not NOTES, reason="the seed notes are not at hand")
@pytest.mark.parametrize("name", list(CELLS))
def test_expected_lines_are_the_notes_own(name):
    text = NOTES[0].read_text()
    cell, lines = CELLS[name]
    after = text[text.index(cell) :]
    for line in lines:
        if line.endswith("  # default"):
            # the notes' line, with the garbage where hpcdist prints the default
            notes_line = re.sub(r"\s*-1\.\s*\]", f" {GARBAGE}]", line.split("  # default")[0])
            assert GARBAGE in notes_line and GARBAGE in after
        else:
            assert line in after, f"{line!r} is not in the notes after {cell}"


def test_queue_runner_threads_give_the_notes_instances():
    """In [6]: which thread reads which line varies, so the instances are compared."""
    out = run("queue_runner_threads.py")
    assert out[-1] == "No more training instances"
    text = "\n".join(out[:-1])
    rows = []
    pat = r"array\(\[(\[.*?\])\], dtype=float32\), array\(\[(.*?)\], dtype=int32\)"
    for feats, labels in re.findall(pat, text, flags=re.S):
        xs = [
            [float(v) for v in r.strip("[] \n").split(",") if v.strip()] for r in feats.split("],")
        ]
        rows += [(*x, int(y)) for x, y in zip(xs, labels.split(","), strict=True)]
    assert sorted(rows) == [(1.0, 2.0, 0), (4.0, 5.0, 1), (7.0, -1.0, 0)]


@pytest.mark.launcher
def test_cluster_tasks_prints_the_notes_value():
    """In [4]: a on /job:ps, b on a worker, c = a + b on worker 1 -> 4.0 (at 3 ranks)."""
    res = run_mpi(3, [str(EXAMPLES / "cluster_tasks.py")], timeout=60)
    assert res.returncode == 0, res.output[-3000:]
    assert res.stdout.splitlines() == ["4.0"]
    if NOTES:
        assert "This code runs only once. Restart kernel from here if necessary.\n4.0" in (
            NOTES[0].read_text()
        )
