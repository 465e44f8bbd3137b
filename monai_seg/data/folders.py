"""Building blocks of the folder scans of :mod:`monai_seg.data.layouts`: scanning a folder against a
naming layout, pairing the files of a case by id, and checking 2D image files the way MONAI's
``PILReader`` reads them.

Every check raises a ``ValueError`` that names the offending file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from .validation import check_cases

__all__ = [
    "IMAGE_SUFFIXES",
    "BINARY_MASK_VALUES",
    "scan_folder",
    "pair_files",
    "check_mask_values",
    "check_image_pair",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")
"""File suffixes treated as images; other files (CSV, licence, notes) are ignored by :func:`scan_folder`."""

BINARY_MASK_VALUES: tuple[tuple[int, ...], ...] = ((0, 255), (0, 1))
"""Allowed value sets of a binary mask: 0/255 (as ISIC and DRIVE store them) or 0/1."""


def _natural_key(file_id: str) -> list:
    """Sort key that orders the digit runs of an id numerically (``"2" < "10"``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", file_id)]


def scan_folder(
    folder: str,
    patterns: Mapping[str, re.Pattern],
    dataset: str,
    naming: str,
    ignore: re.Pattern | None = None,
    suffixes: tuple[str, ...] | None = IMAGE_SUFFIXES,
    case: Callable[[re.Match], tuple[str, Any]] = lambda match: (match["id"], None),
) -> dict[str, dict[str, tuple[str, Any]]]:
    """Sort the files of ``folder`` by kind (image, mask, ...) and case id.

    Hidden files and files without one of ``suffixes`` are skipped; every other file must fully match
    one of ``patterns`` (or ``ignore``).

    Args:
        folder: folder to scan (not recursive).
        patterns: kind -> regular expression, tried in order.
        dataset: dataset name for the error messages (``"ISIC"``).
        naming: the expected file names, for the error message.
        ignore: files of the layout that are not used (e.g. ISIC superpixel maps).
        suffixes: the file suffixes looked at; None: every visible file.
        case: match -> (case id, its fields); default: the ``id`` group.

    Returns:
        kind -> {id -> (path, fields)}, one entry per kind of ``patterns`` (possibly empty).

    Raises:
        ValueError: naming the folder when it is missing or holds no file of the layout, and naming the file
            for a name outside the layout or two files of one kind with the same id.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"{dataset} folder {folder} does not exist.")
    files: dict[str, dict[str, tuple[str, Any]]] = {kind: {} for kind in patterns}
    for name in sorted(entry.name for entry in os.scandir(folder) if entry.is_file()):
        if name.startswith(".") or (suffixes is not None and not name.lower().endswith(suffixes)):
            continue
        if ignore is not None and ignore.fullmatch(name):
            continue
        path = os.path.join(folder, name)
        for kind, pattern in patterns.items():
            match = pattern.fullmatch(name)
            if match is not None:
                break
        else:
            raise ValueError(f"{path} does not follow the {dataset} naming ({naming}).")
        file_id, fields = case(match)
        if file_id in files[kind]:
            raise ValueError(f"{path} and {files[kind][file_id][0]} have the same id {file_id}.")
        files[kind][file_id] = (path, fields)
    if not any(files.values()):
        raise ValueError(f"{dataset} folder {folder} has no images.")
    return files


def pair_files(
    files: Mapping[str, Mapping[str, tuple[str, Mapping[str, Any]]]],
    templates: Mapping[str, str],
    id_key: str | None = "id",
    dataset: str = "",
    skip_invalid: bool | str = False,
) -> list[dict]:
    """Join files of several kinds by case id into a MONAI datalist.

    Args:
        files: key -> {id -> (path, the case's fields)} (:func:`scan_folder`); the first key is the image.
        templates: key -> the expected path of a missing file, with the case's fields and ``{id}`` in braces,
            e.g. ``{"image": "train/{id}.jpg", "label": "train/{id}_segmentation.png"}``.
        id_key: the item key of the id; None: not listed.
        dataset: dataset name for the log.
        skip_invalid: log and drop an incomplete case instead of raising
            (:func:`monai_seg.data.validation.check_cases`).

    Returns:
        ``[{key: path, ..., **fields, id_key: id}]`` sorted by id (digit runs numerically).

    Raises:
        ValueError: naming the file for an image without one of the other files, or a file without image.
    """
    key = id_key or "id"
    items = []
    for file_id in sorted(set().union(*files.values()), key=_natural_key):
        found = {k: of_kind[file_id] for k, of_kind in files.items() if file_id in of_kind}
        fields = next(iter(found.values()))[1] or {}
        items.append({**{k: path for k, (path, _) in found.items()}, **fields, key: file_id})
    items = check_cases(items, partial(_check_complete, templates, key), dataset, skip_invalid, progress=False)
    return items if id_key else [{k: v for k, v in item.items() if k != key} for item in items]


def _check_complete(templates: Mapping[str, str], id_key: str, item: dict) -> None:
    """ValueError naming the file for an item of :func:`pair_files` that lacks one of the ``templates`` keys."""
    (image_key, _), *others = templates.items()
    names = {**item, "id": item[id_key]}
    if image_key not in item:
        key = next(key for key in templates if key in item)
        raise ValueError(f"{key.capitalize()} file {item[key]} has no image {templates[image_key].format(**names)}.")
    for key, template in others:
        if key not in item:
            raise ValueError(f"Image {item[image_key]} has no {key} file {template.format(**names)}.")


def _open(path: str) -> Image.Image:
    """Open an image file lazily; ValueError naming the file when PIL cannot identify it."""
    try:
        return Image.open(path)
    except Exception as err:
        raise ValueError(f"Cannot read image {path}: {err}") from err


def _read_pixels(path: str, convert: str | None) -> np.ndarray:
    """All pixels of a single-channel file, (H, W), as ``np.asarray`` gives them after the optional
    PIL mode conversion (MONAI's ``PILReader`` with the same ``converter`` reads the same values)."""
    with _open(path) as image:
        try:
            array = np.asarray(image.convert(convert) if convert else image)
        except Exception as err:
            raise ValueError(f"Cannot read image {path}: {err}") from err
    if array.ndim != 2:
        raise ValueError(f"Mask {path} is not a single-channel image: shape {array.shape}.")
    return array


def check_mask_values(path: str, mask: np.ndarray, allowed: Sequence[Collection[int]]) -> None:
    """ValueError naming ``path`` unless all values of ``mask`` lie inside one of the ``allowed`` value sets."""
    values = np.unique(mask)
    if not any(set(values.tolist()) <= set(choice) for choice in allowed):
        expected = " or ".join(str(sorted(choice)) for choice in allowed)
        raise ValueError(f"Mask {path} has values {values.tolist()}, expected values within {expected}.")


def check_image_pair(
    item: Mapping,
    image_modes: Collection[str],
    mask_values: Mapping[str, Sequence[Collection[int]]],
    convert: str | None = None,
) -> None:
    """Open the 2D image files of a case and check them.

    Image: fully readable (a truncated file fails) and of one of ``image_modes``. Masks (each key
    of ``mask_values`` present in the item): fully readable, single channel, the image's size, and
    all values inside one of the allowed value sets.

    Args:
        item: datalist item with ``"image"`` and optionally the mask keys.
        image_modes: allowed PIL modes of the images, e.g. ``("RGB",)``.
        mask_values: mask key -> allowed value sets, e.g. ``{"label": [(0, 255), (0, 1)]}``.
        convert: PIL mode the masks are converted to before the value check, as the bundle's reader
            converts them (``"L"`` resolves GIF palettes to gray levels).

    Raises:
        ValueError: naming the file for an unreadable or truncated file, an image of another mode,
            a multi-channel mask, a size mismatch or mask values outside the allowed sets.
    """
    with _open(item["image"]) as image:
        size, mode = image.size, image.mode
        try:
            image.load()
        except Exception as err:
            raise ValueError(f"Cannot read image {item['image']}: {err}") from err
    if mode not in image_modes:
        raise ValueError(f"Image {item['image']} has PIL mode {mode}, expected one of {sorted(image_modes)}.")
    for key, allowed in mask_values.items():
        if key not in item:
            continue
        mask = _read_pixels(item[key], convert)
        if mask.shape[::-1] != size:
            raise ValueError(
                f"Mask {item[key]} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image {item['image']} "
                f"is {size[0]}x{size[1]}."
            )
        check_mask_values(item[key], mask, allowed)
