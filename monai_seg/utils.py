"""Small helpers shared across monai-seg's subpackages."""

from __future__ import annotations

import os

__all__ = ["atomic_write_text"]


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
