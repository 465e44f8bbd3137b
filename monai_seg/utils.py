"""Small helpers shared across monai-seg's subpackages."""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import functools
import io
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["atomic_write_csv", "atomic_write_text", "reuse_freed_memory"]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_trim_before_fork: Callable[[], int] | None = None  # registered once by reuse_freed_memory


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


def reuse_freed_memory(mmap_threshold: int = 2**30, trim_threshold: int = 2**31 - 1) -> bool:
    """Let glibc keep freed memory in the process for the next allocation instead of returning it to the OS.

    By default glibc serves a block of more than 128 KiB to 32 MiB (the bound adapts) with a fresh
    ``mmap`` and unmaps it when freed, and it trims the heap top; the next tensor of that size then
    takes a page fault for each 4 KiB it touches. A net on CPU allocates such tensors many times per
    image: the nerve bundle's inference took 1,200 to 1,900 faults an image, a fifth of its CPU time,
    and its training more system than user time (docs/benchmarks.md). With fixed thresholds, blocks
    under ``mmap_threshold`` come from the heap and up to ``trim_threshold`` of free heap is kept for
    reuse. So that a forked process (a ``DataLoader`` worker) does not share the kept memory
    copy-on-write, which would make the parent's next writes to it fault and copy, the free heap is
    handed back (``malloc_trim``) just before every fork. The setting holds for the whole process
    from the call on; calling it again changes the thresholds only.

    Args:
        mmap_threshold: blocks of this many bytes or more still get their own mapping. A glibc that
            refuses it (older versions cap it) gets 32 MiB, the cap of those on 64 bits.
        trim_threshold: free memory at the heap top beyond this many bytes goes back to the OS.

    Returns:
        whether the C library took the settings: False where there is no glibc ``mallopt`` (macOS,
        Windows, musl), where nothing changes.
    """
    global _trim_before_fork
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    malloc_trim.argtypes, malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    took_mmap = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) or mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
    if not (took_mmap and mallopt(_M_TRIM_THRESHOLD, trim_threshold)):
        return False
    if _trim_before_fork is None:
        _trim_before_fork = functools.partial(malloc_trim, 0)
        os.register_at_fork(before=_trim_before_fork)
    return True
