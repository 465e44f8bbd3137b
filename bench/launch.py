"""Time a command line from launch to exit, with the CPU time and page faults of its processes."""

from __future__ import annotations

import os
import resource
import subprocess
import time


def timed_command(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command``; its wall seconds, its processes' CPU seconds (``user``, ``sys``) and minor page faults.

    Raises:
        RuntimeError: with the end of its standard error, when the command fails.
    """
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    result = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed:\n{result.stderr[-3000:]}")
    return {"wall": seconds, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "faults": after.ru_minflt - before.ru_minflt}
