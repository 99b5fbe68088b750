"""Run-directory safety: every output a new file renamed into place, never through a link."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import TextIO


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The mode of every output file: what open() gives a new file under the umask at import
#: (mkstemp's own 0600 made summary.json private while metrics.jsonl was not).
OUTPUT_MODE = 0o666 & ~_umask()


def open_append(path: Path) -> TextIO:
    """Open `path` for appending without following a symlink planted at its name."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, OUTPUT_MODE)
    except OSError as exc:
        if path.is_symlink():
            raise OSError(f"{path} is a symbolic link: refusing to write through it") from exc
        raise
    return os.fdopen(fd, "a", encoding="utf-8")


def replace_file(path: Path, write) -> None:
    """Output written as a new file beside `path` (write(f) fills it, binary), fsynced, then
    renamed over `path`: a symlink planted at `path` is replaced, never followed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, OUTPUT_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refusal(run_dir: str | os.PathLike) -> str | None:
    """Why outputs must not be written in `run_dir` (another user owns it and anyone may
    write to it: a planted link could wait there), or None; warns about a directory another
    user owns otherwise."""
    st = os.stat(run_dir)
    if st.st_uid == os.getuid():
        return None
    if st.st_mode & 0o002 and not st.st_mode & 0o1000:
        return (
            f"run directory {run_dir} belongs to uid {st.st_uid} and anyone may write to it "
            f"(mode {st.st_mode & 0o7777:o}): refusing to write outputs there; choose a "
            "--run-dir of your own"
        )
    warnings.warn(
        f"run directory {run_dir} belongs to uid {st.st_uid}, not to you (uid {os.getuid()})",
        stacklevel=2,
    )
    return None


def check_run_dir(run_dir: str | os.PathLike) -> None:
    """PermissionError where `refusal` says why `run_dir` must not take outputs."""
    why = refusal(run_dir)
    if why is not None:
        raise PermissionError(why)
