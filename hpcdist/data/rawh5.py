"""Reading uncompressed HDF5 rows with os.preadv at HDF5's own byte addresses (no GIL held)."""

from __future__ import annotations

import ctypes
import os

import numpy as np


class RawRows:
    """Where each row of one dataset lies in its file, when it can be read without HDF5.

    Applies to datasets with no filters (no compression), a native-order
    fixed-size dtype, and either contiguous storage or chunks spanning whole
    rows; `of()` returns None otherwise and the caller reads through h5py.
    h5py holds the GIL while it reads; `os.preadv` does not, so reader
    threads overlap with the trainer and with each other.
    """

    def __init__(self, fd: int, row_bytes: int, chunk_rows: int, starts: dict[int, int]):
        self.fd, self.row_bytes, self.chunk_rows, self.starts = fd, row_bytes, chunk_rows, starts

    @classmethod
    def of(cls, ds, fd: int, base: int) -> RawRows | None:
        """The layout of h5py dataset `ds` whose file is open as `fd` (None: use h5py)."""
        import h5py

        dt = ds.dtype
        if dt.hasobject or dt.byteorder not in ("=", "|", _NATIVE) or ds.ndim < 1:
            return None
        plist = ds.id.get_create_plist()
        if plist.get_nfilters() or plist.get_external_count():
            return None
        row_bytes = int(np.prod(ds.shape[1:], dtype=np.int64)) * dt.itemsize
        layout = plist.get_layout()
        if layout == h5py.h5d.CONTIGUOUS:
            offset = ds.id.get_offset()
            if offset is None:
                return None
            return cls(fd, row_bytes, max(1, len(ds)), {0: base + offset})
        if layout != h5py.h5d.CHUNKED or tuple(ds.chunks[1:]) != tuple(ds.shape[1:]):
            return None
        starts = {}
        for i in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(i)
            if info.filter_mask or info.byte_offset is None:
                return None
            starts[int(info.chunk_offset[0])] = base + int(info.byte_offset)
        return cls(fd, row_bytes, int(ds.chunks[0]), starts)

    def segments(self, start: int, stop: int):
        """(first row, end row, file offset) per chunk of [start, stop); None: one not stored."""
        out, row = [], start
        while row < stop:
            c0 = row - row % self.chunk_rows
            base = self.starts.get(c0)
            if base is None:
                return None
            end = min(stop, c0 + self.chunk_rows)
            out.append((row, end, base + (row - c0) * self.row_bytes))
            row = end
        return out

    def read_into(self, start: int, stop: int, out: np.ndarray) -> bool:
        """Rows [start, stop) into C-contiguous `out`; False if a chunk is not stored."""
        segs = self.segments(start, stop)
        if segs is None:
            return False
        flat = out.reshape(-1).view(np.uint8)
        for r0, r1, at in segs:
            pos = (r0 - start) * self.row_bytes
            _pread_full(self.fd, flat[pos : pos + (r1 - r0) * self.row_bytes], at)
        return True


_NATIVE = "<" if np.little_endian else ">"


IOV_MAX = 1024  # Linux's limit on buffers per preadv call


def preadv_full(fd: int, bufs: list, offset: int) -> None:
    """Fill every buffer of `bufs` (byte memoryviews) from consecutive bytes at `offset`."""
    for i in range(0, len(bufs), IOV_MAX):
        part = bufs[i : i + IOV_MAX]
        want = sum(map(len, part))
        got = os.preadv(fd, part, offset)
        while got < want:  # a short read: go on from the first buffer not filled
            if got <= 0:
                raise OSError(f"file ends {want} bytes short at offset {offset}")
            offset, want, j = offset + got, want - got, 0
            while got >= len(part[j]):
                got, j = got - len(part[j]), j + 1
            part = [part[j][got:], *part[j + 1 :]]
            got = os.preadv(fd, part, offset)
        offset += want


def _libc_preadv():
    try:
        fn = ctypes.CDLL(None, use_errno=True).preadv
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong]
    fn.restype = ctypes.c_ssize_t
    return fn


#: libc's preadv through ctypes (which releases the GIL), or None where there is none.
_PREADV = _libc_preadv()
#: Whether preadv_rows can be used (else read with preadv_full and per-row memoryviews).
LIBC_PREADV = _PREADV is not None


def preadv_rows(fd: int, addrs: np.ndarray, row_bytes: int, offset: int) -> None:
    """Read len(addrs) consecutive rows of `row_bytes` at `offset`, row i to address addrs[i].

    The iovec array is built by numpy and libc's preadv is called through ctypes,
    so no Python object is made per row and the GIL is free during the read. The
    caller keeps the arrays behind `addrs` alive until this returns.
    """
    iov = np.empty((len(addrs), 2), np.uint64)  # struct iovec {void *base; size_t len;}
    iov[:, 0] = addrs
    iov[:, 1] = row_bytes
    i, n = 0, len(iov)
    while i < n:
        part = iov[i : i + IOV_MAX]
        want = int(part[:, 1].sum())
        got = _PREADV(fd, part.ctypes.data, len(part), offset)
        if got < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"preadv: {os.strerror(err)}")
        if got == 0 and want:
            raise OSError(f"file ends {want} bytes short at offset {offset}")
        offset += got
        if got == want:
            i += len(part)
            continue
        while got and got >= iov[i, 1]:  # a short read: skip the rows filled, trim the next
            got -= int(iov[i, 1])
            i += 1
        if got:
            iov[i, 0] += np.uint64(got)
            iov[i, 1] -= np.uint64(got)


def _pread_full(fd: int, buf: np.ndarray, offset: int) -> None:
    done = 0
    while done < len(buf):
        got = os.preadv(fd, [buf[done:]], offset + done)
        if got <= 0:
            raise OSError(f"file ends {len(buf) - done} bytes short at offset {offset + done}")
        done += got
