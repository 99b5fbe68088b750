"""Seed notes In [7]: lines of a CSV file decoded one by one, then "Done".

python examples/seed/text_line_dataset.py

Differs from the notes on purpose: the missing x2 prints as its record default,
-1. (TF 1 printed garbage, -1.28134154e-20).
"""

import tempfile

import numpy as np
from csv_shuffle_queue import write_test_csv

from hpcdist.data import LineReader, decode_csv, filename_queue
from hpcdist.errors import OutOfRangeError


def main(directory) -> None:
    names = filename_queue([write_test_csv(directory)])  # the list of file names
    reader = LineReader(skip_header_lines=1)  # skip(1): the header
    try:
        while True:
            _, line = reader.read(names)
            x1, x2, y = decode_csv(line, record_defaults=[[-1.0], [-1.0], [-1.0]])
            print(np.array([x1, x2], np.float32), np.float32(y))
    except OutOfRangeError:
        print("Done")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(tmp)
