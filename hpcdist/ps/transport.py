"""Two-sided transport between workers and ps tasks: header + payload buffers, Mprobe/Mrecv.

Every data message is one contiguous byte buffer (a `Frame`): a header of
HEADER_WORDS int64 (kind, worker, version, samples, remaining, flags, extra,
seq, epoch, scale as float64 bits) followed by the payload in the wire dtype (the
parameters' dtype, or 16 bits with --compression fp16/bf16; the ps always
sums and keeps its values in at least float32). Control messages (set-up,
checkpoint state, statistics) are rare and travel as pickles on their own tag.

The ps receives with matched probes (Improbe, then Mrecv on the message it
matched), so a probe and a receive cannot race; while nothing arrives it
backs off like hpcdist.deadline.Deadline.pause (yield, then sleeps up to
1 ms), so an idle ps does not spin a core on an oversubscribed node.
"""

from __future__ import annotations

import pickle

import numpy as np
from mpi4py import MPI

from ..compression import Compression

HEADER_WORDS = 10
HEADER_BYTES = HEADER_WORDS * 8
#: Tags: data frames to a ps, replies from a ps, control to a ps, control replies, and
#: ps-async's permission to go on (from ps task 0).
TAG_DATA, TAG_REPLY, TAG_CTRL, TAG_CTRL_REPLY, TAG_GO = 11, 12, 13, 14, 15
#: Frame kinds (header word 0).
PUSH, PULL, INIT, DONE, PARAMS = 1, 2, 3, 4, 5
_FIELDS = ("kind", "worker", "version", "samples", "remaining", "flags", "extra", "seq", "epoch")


class Frame:
    """A header and a payload of `count` elements of `dtype` in one byte buffer."""

    def __init__(self, count: int, dtype):
        self.dtype = np.dtype(dtype)
        self.buf = np.zeros(HEADER_BYTES + count * self.dtype.itemsize, np.uint8)
        self.header = self.buf[:HEADER_BYTES].view(np.int64)
        self.payload = self.buf[HEADER_BYTES:].view(self.dtype)

    def set(self, *, scale: float = 1.0, **fields) -> Frame:
        """Fill the header (unnamed fields become 0)."""
        self.header[:] = 0
        for name, value in fields.items():
            self.header[_FIELDS.index(name)] = int(value)
        self.header[-1:].view(np.float64)[0] = scale
        return self

    def get(self, name: str) -> int:
        return int(self.header[_FIELDS.index(name)])

    @property
    def scale(self) -> float:
        return float(self.header[-1:].view(np.float64)[0])

    @property
    def nbytes(self) -> int:
        return self.buf.nbytes


class Codec:
    """Puts float arrays on the wire (same dtype or 16 bits) and takes them off in float32+."""

    def __init__(self, compression="none", dtype=np.float32):
        self.compressor = Compression.get(compression)
        self.dtype = np.dtype(dtype)
        self.sum_dtype = np.promote_types(self.dtype, np.float32)
        self.wire_dtype = (
            self.compressor.wire_dtype(self.dtype) if self.compressor.wire_itemsize else self.dtype
        )

    def frame(self, count: int) -> Frame:
        return Frame(count, self.wire_dtype)

    def encode_into(self, frame: Frame, values: np.ndarray) -> float:
        """Write `values` (1-D, count elements) into frame.payload; return the scale used."""
        if self.compressor.wire_itemsize is None:
            frame.payload[...] = values
            return 1.0
        scale = self.compressor.scale_for(values)
        frame.payload[...] = self.compressor.encode(values, scale)
        return scale

    def decode(self, frame: Frame, out: np.ndarray | None = None, add: bool = False):
        """frame.payload in sum_dtype (into `out`, or added to it with add=True)."""
        values = frame.payload
        if self.compressor.wire_itemsize is not None:
            values = self.compressor.decode(values, self.sum_dtype, frame.scale)
        if out is None:
            return values.astype(self.sum_dtype, copy=True)
        if add:
            out += values
        else:
            out[...] = values
        return out


class Port:
    """One rank's end of the ps communicator: matched probes, sends, pickled control."""

    def __init__(self, comm: MPI.Comm):
        self.comm = comm

    def probe(self):
        """(message, status) of the next message from anyone, or (None, None) (never blocks;
        the buffer-level Improbe: no pickle buffer is allocated for the matched message)."""
        status = MPI.Status()
        msg = self.comm.Improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, status)
        return (msg, status) if msg is not None else (None, None)

    @staticmethod
    def receive_frame(msg, status, frame: Frame) -> int:
        """Mrecv the matched message into frame (it may be shorter); its size in bytes."""
        n = status.Get_count(MPI.BYTE)
        if n > frame.nbytes:
            raise ValueError(
                f"a {n}-byte message from rank {status.Get_source()} does not fit a "
                f"{frame.nbytes}-byte frame: the ranks disagree on the shard layout"
            )
        msg.Recv([frame.buf, n, MPI.BYTE])
        return n

    @staticmethod
    def receive_object(msg, status):
        buf = bytearray(status.Get_count(MPI.BYTE))
        msg.Recv([buf, MPI.BYTE])
        return pickle.loads(buf)

    def isend_frame(self, frame: Frame, dest: int, tag: int, header_only: bool = False):
        data = frame.buf[:HEADER_BYTES] if header_only else frame.buf
        return self.comm.Isend([data, MPI.BYTE], dest, tag)

    def irecv_frame(self, frame: Frame, source: int, tag: int = TAG_REPLY):
        return self.comm.Irecv([frame.buf, MPI.BYTE], source, tag)

    def isend_object(self, obj, dest: int, tag: int):
        data = pickle.dumps(obj, protocol=5)
        return self.comm.Isend([data, MPI.BYTE], dest, tag), data  # keep data alive


def poll_object(port: Port, source: int, tag: int):
    """The next pickled object from `source` on `tag` if one has come, else None."""
    status = MPI.Status()
    msg = port.comm.Improbe(source, tag, status)
    return None if msg is None else Port.receive_object(msg, status)


def wait_object(port: Port, source: int, tag: int, deadline, what: str):
    """The next pickled object from `source` on `tag`; CollectiveTimeoutError past the deadline."""
    from ..errors import CollectiveTimeoutError

    while True:
        obj = poll_object(port, source, tag)
        if obj is not None:
            return obj
        if deadline.expired():
            raise CollectiveTimeoutError(
                f"timed out after {deadline.seconds:g} s waiting for {what}"
            )
        deadline.pause()
