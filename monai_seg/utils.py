"""Small helpers shared across monai-seg's subpackages."""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import io
import os
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["atomic_write_csv", "atomic_write_text", "reuse_freed_memory"]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it onto ``path``.

    A reader (or a killed job) never sees a half-written file, and an existing ``path`` is replaced
    only once the new content is complete.
    """
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_csv(path: str | os.PathLike, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV table (``header``, then ``rows``; ``\n`` line ends) with :func:`atomic_write_text`."""
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())


def reuse_freed_memory(mmap_threshold: int = 64 * 2**20, trim_threshold: int = 256 * 2**20) -> bool:
    """Let glibc keep freed memory in the process for the next allocation instead of returning it to the OS.

    By default glibc serves a block of more than 128 KiB to 32 MiB (the bound adapts) with a fresh
    ``mmap`` and unmaps it when freed, and it trims the heap top; the next tensor of that size then
    takes a page fault for each 4 KiB it touches. A 2D net on CPU allocates such tensors many times
    per image (the nerve bundle's inference: 1,200 to 1,900 faults an image, a fifth of its CPU time;
    docs/benchmarks.md). With fixed thresholds, blocks up to ``mmap_threshold`` come
    from the heap and up to ``trim_threshold`` of free heap is kept for reuse. The setting holds for
    the whole process (and the processes it forks) from the call on.

    Args:
        mmap_threshold: blocks of this many bytes or more still get their own mapping.
        trim_threshold: free memory at the heap top beyond this many bytes goes back to the OS.

    Returns:
        whether the C library took the settings: False where there is no glibc ``mallopt`` (macOS,
        Windows, musl), where nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
