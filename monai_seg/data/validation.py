"""The validation pass every reader shares: check a datalist case by case before training starts,
stop at the first bad case with a ``ValueError`` naming the file and the problem, or, with
``skip_invalid``, log each bad case, drop it and report how many were skipped (optionally in a
``failures.csv``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.utils import optional_import
from monai.utils.misc import str2bool

from monai_seg.utils import atomic_write_csv

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")
idist, _ = optional_import("ignite.distributed")

__all__ = ["PROGRESS_MIN_CASES", "check_cases", "check_finite", "check_disjoint_ids"]

logger = logging.getLogger("monai_seg.data")

PROGRESS_MIN_CASES = 100
"""Datalists of at least this many cases show a progress bar while validated (``progress=None``)."""


def _case_file(item: Mapping) -> str:
    """The input file of a case: its image (its first file when it has none), or the folder of its
    modality files."""
    image = item.get("image", next(iter(item.values())))
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else os.path.dirname(os.fspath(image[0]))


def _write_failures(path: str, failures: Sequence[tuple[str, str]]) -> None:
    """Write ``file,error`` rows (a header only when there is no failure), creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_csv(path, ["file", "error"], failures)


def check_cases(
    datalist: Sequence[dict],
    check: Callable[[dict], Any],
    dataset: str,
    skip_invalid: bool | str = False,
    progress: bool | None = None,
    failures_csv: str | os.PathLike | None = None,
) -> Sequence[dict]:
    """Run ``check`` on every case of a datalist.

    Args:
        datalist: MONAI datalist items (``"image"`` is a path, or a list of paths for multi-file cases).
        check: raises a ``ValueError`` naming the file and the problem for a bad case.
        dataset: name for the progress bar and the log (``"ISIC train"``).
        skip_invalid: False: raise the first error. True (or ``"true"``, as a bundle command line
            passes it): log each bad case as a warning, drop it and log ``"skipped k of n cases"``.
        progress: show a tqdm progress bar; None shows one for :data:`PROGRESS_MIN_CASES` cases or more
            (on rank 0 only under ``torchrun``).
        failures_csv: with ``skip_invalid``, also write the dropped cases to this CSV (``file,error``),
            header only when none was dropped; rank 0 writes it under ``torchrun``.

    Returns:
        ``datalist`` itself when every case passes, otherwise the list of the good cases in order.

    Raises:
        ValueError: the first error of ``check`` unless ``skip_invalid``; with ``skip_invalid``, when
            no case is left.
    """
    skip_invalid = str2bool(skip_invalid)
    first_rank = idist.get_rank() == 0  # under torchrun every rank checks the list; rank 0 reports
    show = (len(datalist) >= PROGRESS_MIN_CASES and first_rank) if progress is None else progress
    items = tqdm(datalist, desc=f"validating {dataset}") if show and has_tqdm else datalist
    valid: list[dict] = []
    failures: list[tuple[str, str]] = []
    for item in items:
        try:
            check(item)
        except ValueError as err:
            if not skip_invalid:
                raise
            logger.warning("%s: skipping %s: %s", dataset, _case_file(item), err)
            failures.append((_case_file(item), str(err)))
        else:
            valid.append(item)
    if skip_invalid and failures_csv is not None and first_rank:
        _write_failures(os.fspath(failures_csv), failures)
    if failures:
        where = f"see {os.fspath(failures_csv)}" if failures_csv is not None else "see the warnings above"
        if not valid:
            raise ValueError(f"{dataset}: all {len(datalist)} cases are invalid; {where}.")
        logger.warning("%s: skipped %d of %d cases; %s.", dataset, len(failures), len(datalist), where)
        return valid
    return datalist


def check_finite(path: str, array: np.ndarray) -> None:
    """ValueError naming ``path`` when ``array`` holds NaN or infinite values."""
    bad = ~np.isfinite(array)
    if bad.any():
        num_nan = int(np.isnan(array).sum())
        raise ValueError(
            f"{path} has {num_nan} NaN and {int(bad.sum()) - num_nan} infinite value(s), e.g. at index "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}."
        )


def check_disjoint_ids(sections: Mapping[str, Sequence[Mapping]], key: str = "id") -> None:
    """ValueError naming both files when two sections of a split (train/val) share a case id (a leak).

    Args:
        sections: section name -> datalist, e.g. ``{"train": [...], "val": [...]}``.
        key: the item key holding the case id.
    """
    seen: dict[Any, tuple[str, Mapping]] = {}
    for section, datalist in sections.items():
        for item in datalist:
            other = seen.get(item[key])
            if other is not None and other[0] != section:
                raise ValueError(
                    f"{_case_file(item)} ({section}) and {_case_file(other[1])} ({other[0]}) have the same id "
                    f"{item[key]}: a case in two sections leaks into the evaluation."
                )
            seen[item[key]] = (section, item)
