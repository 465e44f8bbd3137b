"""Kaggle run-length encoding (RLE) of binary masks, the submission writer and the
``train_masks.csv`` reader of the Kaggle 2016 ultrasound nerve segmentation challenge.

Kaggle's RLE reads the mask in column-major order (top to bottom, then left to right: the
transposed mask flattened), numbers pixels from 1, and writes ``"start length"`` pairs separated
by single spaces; an empty mask is the empty string.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from monai_seg.utils import atomic_write_csv

__all__ = ["NERVE_IMAGE_SHAPE", "rle_encode", "rle_decode", "write_submission", "read_submission", "read_train_masks_csv"]

NERVE_IMAGE_SHAPE = (420, 580)
"""(height, width) of the Kaggle nerve images and masks as read from the TIF files."""


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2D mask as Kaggle run-length encoding.

    Args:
        mask: (H, W) array; every nonzero pixel is foreground (0/1 and 0/255 masks alike).

    Returns:
        ``"start length start length ..."`` with 1-indexed starts in column-major order,
        or ``""`` for an empty mask.

    Raises:
        ValueError: when ``mask`` is not 2D.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2D (H, W) mask, got shape {mask.shape}.")
    padded = np.zeros(mask.size + 2, dtype=bool)
    padded[1:-1] = mask.T.reshape(-1)
    # run edges in the padded array are the 1-indexed starts and the 1-indexed ends + 1
    runs = np.flatnonzero(np.diff(padded)) + 1
    runs[1::2] -= runs[::2]
    return " ".join(map(str, runs.tolist()))


def _parse_rle(rle: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate a Kaggle RLE string.

    Args:
        rle: ``"start length ..."`` pairs, 1-indexed, column-major.
        shape: (H, W) of the mask the RLE describes.

    Returns:
        0-indexed starts and the lengths of the runs, as int64 arrays.

    Raises:
        ValueError: for a non-integer token, an odd number of values, a start below 1, a length
            below 1, a run past the end of the image, or runs that overlap or are not sorted.
    """
    values = []
    for position, token in enumerate(rle.split()):
        try:
            values.append(int(token))
        except ValueError:
            raise ValueError(f"RLE value {position + 1} ({token!r}) is not an integer.") from None
    if len(values) % 2:
        raise ValueError(f"RLE has an odd number of values ({len(values)}), expected 'start length' pairs.")
    runs = np.asarray(values, dtype=np.int64).reshape(-1, 2)
    starts, lengths = runs[:, 0] - 1, runs[:, 1]
    size = shape[0] * shape[1]
    ends = starts + lengths
    checks = (
        (starts < 0, "starts before pixel 1 (starts are 1-indexed)"),
        (lengths < 1, "is empty (lengths must be at least 1)"),
        (ends > size, f"runs past the end of the {shape[0]}x{shape[1]} image ({size} pixels)"),
        (
            np.insert(starts[1:] < ends[:-1], 0, False),
            "starts before the end of the previous run (runs must be sorted and disjoint)",
        ),
    )
    for bad, reason in checks:
        if bad.any():
            run = int(np.argmax(bad))
            raise ValueError(f"RLE run {run + 1} (start {starts[run] + 1}, length {lengths[run]}) {reason}.")
    return starts, lengths


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode a Kaggle RLE string into a binary mask.

    Args:
        rle: ``"start length ..."`` pairs, 1-indexed, column-major; ``""`` for an empty mask.
        shape: (H, W) of the mask, (420, 580) for the Kaggle nerve images.

    Returns:
        (H, W) uint8 mask of 0 and 1 (multiply by 255 for Kaggle's ``_mask.tif`` convention).

    Raises:
        ValueError: for malformed RLE (see :func:`_parse_rle`).
    """
    starts, lengths = _parse_rle(rle, shape)
    # pixel indices of every run: its start repeated over its length, plus 0 .. length - 1
    steps = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    flat[np.repeat(starts, lengths) + steps] = 1
    return np.ascontiguousarray(flat.reshape(shape[1], shape[0]).T)


def write_submission(rows: Mapping[int | str, str] | Iterable[tuple[int | str, str]], path: str | os.PathLike) -> str:
    """Write a Kaggle nerve submission CSV (``img,pixels``), rows sorted by numeric image id.

    Args:
        rows: image id -> RLE, as a mapping or as ``(img, rle)`` pairs; ids are test image
            numbers (``1`` or ``"1"``).
        path: output CSV file; its folder must exist.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: when an image id is not an integer or appears twice.
    """
    pairs = rows.items() if isinstance(rows, Mapping) else rows
    submission: dict[int, str] = {}
    for img, rle in pairs:
        try:
            number = int(img)
        except ValueError:
            raise ValueError(f"Submission image id {img!r} is not an integer.") from None
        if number in submission:
            raise ValueError(f"Submission image id {number} appears more than once.")
        submission[number] = rle
    atomic_write_csv(path, ["img", "pixels"], sorted(submission.items()))
    return str(path)


def _read_rle_table(path: str | os.PathLike, header: Sequence[str], shape: tuple[int, int]) -> dict[tuple[int, ...], str]:
    """Rows ``id..., pixels`` of an RLE CSV with integer ids, validated; (ids) -> RLE, in file order.

    Raises:
        ValueError: naming the file and the line for a wrong header, a row of another length, a
            non-integer id, a repeated image or malformed RLE.
    """
    masks: dict[tuple[int, ...], str] = {}
    ids = ",".join(header[:-1])
    with open(path, newline="") as f:
        reader = csv.reader(f)
        found = next(reader, None)
        if found != list(header):
            raise ValueError(f"{path}: expected the header '{','.join(header)}', got {found}.")
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if len(row) != len(header):
                raise ValueError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(row)}.")
            if not all(value.isdecimal() for value in row[:-1]):
                raise ValueError(f"{where}: {ids} {row[:-1]} must be integers.")
            key = tuple(int(value) for value in row[:-1])
            name = "_".join(map(str, key))
            if key in masks:
                raise ValueError(f"{where}: image {name} appears more than once.")
            try:
                _parse_rle(row[-1], shape)
            except ValueError as err:
                raise ValueError(f"{where} (image {name}): {err}") from None
            masks[key] = row[-1]
    return masks


def read_submission(path: str | os.PathLike, shape: tuple[int, int] = NERVE_IMAGE_SHAPE) -> dict[int, str]:
    """Read and validate a Kaggle nerve submission or answer key (``img,pixels``).

    Args:
        path: the CSV file.
        shape: (H, W) of the masks, used to validate the RLE.

    Returns:
        image number -> RLE string (empty for an empty mask), in file order.

    Raises:
        ValueError: naming the file and the line for a wrong header, a row without two fields, a
            non-integer or repeated img, or malformed RLE.
    """
    return {img: rle for (img,), rle in _read_rle_table(path, ("img", "pixels"), shape).items()}


def read_train_masks_csv(path: str | os.PathLike, shape: tuple[int, int] = NERVE_IMAGE_SHAPE) -> dict[str, str]:
    """Read and validate Kaggle's ``train_masks.csv`` (``subject,img,pixels``).

    Args:
        path: the CSV file.
        shape: (H, W) of the masks, used to validate the RLE.

    Returns:
        ``"{subject}_{img}"`` (the image file stem, as ``id`` in
        the nerve layout's datalists) -> RLE string, in file order.

    Raises:
        ValueError: naming the file and the line for a wrong header, a row without three
            fields, a non-integer subject or img, a repeated image, or malformed RLE.
    """
    table = _read_rle_table(path, ("subject", "img", "pixels"), shape)
    return {f"{subject}_{img}": rle for (subject, img), rle in table.items()}
