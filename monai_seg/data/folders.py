"""Building blocks of the image-folder readers (ISIC, DRIVE, X-ray): scanning a folder against a
naming layout, pairing images with their masks, checking files the way MONAI's ``PILReader`` reads
them, and writing a demo dataset atomically.

Every check raises a ``ValueError`` that names the offending file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial

import numpy as np
from PIL import Image
from scipy import ndimage

from .validation import check_cases

__all__ = [
    "IMAGE_SUFFIXES",
    "BINARY_MASK_VALUES",
    "scan_folder",
    "pair_files",
    "validate_pairs",
    "ensure_demo",
    "smooth_noise",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")
"""File suffixes treated as images; other files (CSV, licence, notes) are ignored by :func:`scan_folder`."""

BINARY_MASK_VALUES: tuple[tuple[int, ...], ...] = ((0, 255), (0, 1))
"""Allowed value sets of a binary mask: 0/255 (as ISIC and DRIVE store them) or 0/1."""


def _natural_key(file_id: str) -> list:
    """Sort key that orders the digit runs of an id numerically (``"2" < "10"``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", file_id)]


def scan_folder(
    folder: str, patterns: Mapping[str, re.Pattern], dataset: str, ignore: re.Pattern | None = None
) -> dict[str, dict[str, str]]:
    """Sort the image files of ``folder`` by kind (image, mask, ...) and id.

    Hidden files and files without an image suffix (:data:`IMAGE_SUFFIXES`) are skipped; every
    other file must fully match one of ``patterns`` (or ``ignore``).

    Args:
        folder: folder to scan (not recursive).
        patterns: kind -> regular expression with a named group ``id``, tried in order.
        dataset: dataset name for the error messages (``"ISIC"``).
        ignore: image files of the layout that are not used (e.g. ISIC superpixel maps).

    Returns:
        kind -> {id -> path}, one entry per kind of ``patterns`` (possibly empty).

    Raises:
        ValueError: naming the folder when it is missing or holds no image file of the layout, and
            naming the file for a name outside the layout or two files of one kind with the same id.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"{dataset} folder {folder} does not exist.")
    files: dict[str, dict[str, str]] = {kind: {} for kind in patterns}
    for name in sorted(entry.name for entry in os.scandir(folder) if entry.is_file()):
        if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        if ignore is not None and ignore.fullmatch(name):
            continue
        path = os.path.join(folder, name)
        for kind, pattern in patterns.items():
            match = pattern.fullmatch(name)
            if match is not None:
                break
        else:
            expected = ", ".join(pattern.pattern for pattern in patterns.values())
            raise ValueError(f"{path} does not follow the {dataset} naming ({expected}).")
        file_id = match["id"]
        if file_id in files[kind]:
            raise ValueError(f"{path} and {files[kind][file_id]} have the same id {file_id}.")
        files[kind][file_id] = path
    if not any(files.values()):
        raise ValueError(f"{dataset} folder {folder} has no images.")
    return files


def pair_files(
    layout: Mapping[str, tuple[Mapping[str, str], str]], dataset: str = "", skip_invalid: bool | str = False
) -> Sequence[dict]:
    """Join files of several kinds by id into a MONAI datalist.

    Args:
        layout: key -> (id -> path, the expected path of a missing file with ``{id}`` in it); the
            first key is the image, e.g. ``{"image": (images, "train/{id}.jpg"), "label": (masks,
            "train/{id}_segmentation.png")}``.
        dataset: dataset name for the log.
        skip_invalid: log and drop an incomplete case instead of raising
            (:func:`monai_seg.data.validation.check_cases`).

    Returns:
        ``[{key: path, ..., "id": id}]`` sorted by id (digit runs numerically).

    Raises:
        ValueError: naming the file for an image without one of the other files, or a file without image.
    """
    ids = set().union(*(files for files, _ in layout.values()))
    items = [
        {**{key: files[file_id] for key, (files, _) in layout.items() if file_id in files}, "id": file_id}
        for file_id in sorted(ids, key=_natural_key)
    ]
    return check_cases(items, partial(_check_complete, layout), dataset, skip_invalid, progress=False)


def _check_complete(layout: Mapping[str, tuple[Mapping[str, str], str]], item: dict) -> None:
    """ValueError naming the file for an item of :func:`pair_files` that lacks one of the ``layout`` keys."""
    (image_key, (_, image_template)), *others = layout.items()
    if image_key not in item:
        key = next(key for key in layout if key in item)
        raise ValueError(f"{key.capitalize()} file {item[key]} has no image {image_template.format(id=item['id'])}.")
    for key, (_, template) in others:
        if key not in item:
            raise ValueError(f"Image {item[image_key]} has no {key} file {template.format(id=item['id'])}.")


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


def validate_pairs(
    datalist: Sequence[dict],
    dataset: str,
    image_modes: Collection[str],
    mask_values: Mapping[str, Sequence[Collection[int]]],
    convert: str | None = None,
    progress: bool | None = None,
    skip_invalid: bool | str = False,
    failures_csv: str | os.PathLike | None = None,
) -> Sequence[dict]:
    """Open every file of a datalist and check it.

    Images: fully readable (a truncated file fails) and of one of ``image_modes``. Masks (each key
    of ``mask_values`` present in an item): fully readable, single channel, the image's size, and
    all values inside one of the allowed value sets.

    Args:
        datalist: items with ``"image"`` and optionally the mask keys.
        dataset: dataset name for the error messages.
        image_modes: allowed PIL modes of the images, e.g. ``("RGB",)``.
        mask_values: mask key -> allowed value sets, e.g. ``{"label": [(0, 255), (0, 1)]}``.
        convert: PIL mode the masks are converted to before the value check, as the bundle's reader
            converts them (``"L"`` resolves GIF palettes to gray levels).
        progress: show a tqdm progress bar; None: for large datalists
            (see :func:`monai_seg.data.validation.check_cases`).
        skip_invalid: log and drop a bad case instead of raising.
        failures_csv: with ``skip_invalid``, write the dropped cases to this CSV (``file,error``).

    Returns:
        ``datalist`` itself when every case passes, otherwise the good cases.

    Raises:
        ValueError: naming the file for an unreadable or truncated file, an image of another mode,
            a multi-channel mask, a size mismatch or mask values outside the allowed sets.
    """
    check = partial(_check_pair, image_modes=image_modes, mask_values=mask_values, convert=convert)
    return check_cases(datalist, check, dataset, skip_invalid, progress, failures_csv)


def _check_pair(
    item: dict, image_modes: Collection[str], mask_values: Mapping[str, Sequence[Collection[int]]], convert: str | None
) -> None:
    """Check one item of :func:`validate_pairs`."""
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
        values = np.unique(mask)
        if not any(set(values.tolist()) <= set(choice) for choice in allowed):
            expected = " or ".join(str(sorted(choice)) for choice in allowed)
            raise ValueError(f"Mask {item[key]} has values {values.tolist()}, expected values within {expected}.")


def ensure_demo(dataset_dir: str | os.PathLike, marker: str, make_demo: Callable[[str], object]) -> str:
    """Create a demo dataset with ``make_demo`` unless ``dataset_dir/marker`` exists.

    The data is written to a hidden temporary folder inside ``dataset_dir`` and its top-level
    entries are moved into place, ``marker`` last, so that concurrent calls (one per distributed
    rank) never see a partial dataset. Existing entries are kept.

    Args:
        dataset_dir: dataset folder, created if needed.
        marker: top-level entry whose presence marks a complete dataset (e.g. ``"train"``).
        make_demo: writes the dataset into the folder it is given.

    Returns:
        ``dataset_dir`` as a string.
    """
    dataset_dir = os.fspath(dataset_dir)
    if os.path.exists(os.path.join(dataset_dir, marker)):
        return dataset_dir
    os.makedirs(dataset_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".demo_", dir=dataset_dir)
    try:
        make_demo(staging)
        names = sorted(os.listdir(staging), key=lambda name: name == marker)  # marker last
        for name in names:
            target = os.path.join(dataset_dir, name)
            try:
                os.rename(os.path.join(staging, name), target)
            except OSError:
                if not os.path.exists(target):  # otherwise another process moved it in first
                    raise
    finally:
        shutil.rmtree(staging)
    return dataset_dir


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation, float32 (demo textures).

    Args:
        rng: random generator.
        shape: array shape.
        sigma: smoothing scale in pixels (the texture's grain size).
    """
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-6)
