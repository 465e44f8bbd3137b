"""The lowest layer of monai-seg: helpers every other module may use, importing nothing of monai_seg.

It is the one home of the file-system helpers: writing files atomically (:func:`atomic_write_text`,
:func:`atomic_write_csv`, :func:`atomic_save`), file checksums (:func:`file_sha256`), and the guard that
keeps a run from replacing earlier results (:func:`check_free`, and :func:`check_outputs` for bundle runs,
also under ``torchrun``). The readers, metrics, figures, handlers and experiments all write through them,
so each of these lives here rather than in one of those layers. :func:`reuse_freed_memory` tunes the C allocator of
the process for CPU training and inference.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import functools
import glob
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from monai.utils import optional_import, str2bool

idist, _ = optional_import("ignite.distributed")

__all__ = [
    "atomic_save",
    "atomic_write_csv",
    "atomic_write_text",
    "check_free",
    "check_outputs",
    "file_sha256",
    "read_json",
    "reuse_freed_memory",
]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_trim_before_fork: Callable[[], int] | None = None  # registered once by reuse_freed_memory


def atomic_save(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Let ``write`` write a temporary file beside ``path``, then rename it onto ``path``.

    A reader (or a killed job) never sees a half-written file, and an existing ``path`` is replaced
    only once the new content is complete. The temporary name keeps the suffix of ``path``
    (``curves.<pid>.tmp.png``), for writers that choose the format by it (``Figure.savefig``).

    Args:
        path: the file to write.
        write: called with the temporary file name; writes the content there.
    """
    root, ext = os.path.splitext(os.fspath(path))
    tmp = f"{root}.{os.getpid()}.tmp{ext}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_json(path: str | os.PathLike) -> Any:
    """The content of a JSON file.

    Raises:
        ValueError: naming the file when it cannot be read or is not valid JSON.
    """
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read {path}: {error}") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` with :func:`atomic_save`."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            f.write(text)

    atomic_save(path, write)


def atomic_write_csv(path: str | os.PathLike, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV table (``header``, then ``rows``; ``\n`` line ends) with :func:`atomic_write_text`."""
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes (e.g. to tie a result to the model file it was computed with)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_free(paths: Sequence[str], overwrite: bool) -> None:
    """Remove ``paths`` when ``overwrite``; otherwise FileExistsError if any exists."""
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass overwrite=True to replace it.")
    for path in existing:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def check_outputs(paths: Sequence[str], overwrite: bool | str) -> None:
    """Refuse to replace the results of an earlier run unless ``overwrite`` (which removes them first).

    Under ``torchrun`` every rank calls it: rank 0 checks (and removes) and sends the outcome to the
    others, so that no rank starts writing before the earlier outputs are gone and all of them stop
    with the same error.

    Args:
        paths: files or folders a run writes; glob patterns (``out/*_seg.nii.gz``) are expanded and an
            empty folder counts as free.
        overwrite: remove the existing paths instead of raising (a bool, or ``"true"``/``"false"`` as the
            bundle command line passes it).

    Raises:
        FileExistsError: naming the first existing path and the flag, when ``overwrite`` is False.
    """
    error = ""
    if idist.get_rank() == 0:
        found = [
            match
            for path in paths
            for match in sorted(glob.glob(path))
            if not (os.path.isdir(match) and not os.listdir(match))
        ]
        try:
            check_free(found, str2bool(overwrite))
        except FileExistsError as exc:
            error = f"{exc} (on the bundle command line: --overwrite true)"
    if idist.get_world_size() > 1:
        error = idist.broadcast(error, src=0)
    if error:
        raise FileExistsError(error)


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
