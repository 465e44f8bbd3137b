"""Multi-class X-ray segmentation data in a generic image/mask folder layout: reader, validation,
split and a synthetic 16-bit demo dataset.

Layout (``dataset_dir``)::

    train/images/<name>.png    grayscale radiograph, 8- or 16-bit PNG or TIFF (.tif, .tiff)
    train/masks/<name>.png     integer class map of the same size, values 0..num_classes-1
                               (PNG or TIFF, any file name suffix; palette PNGs hold class indices)
    val/...                    the same for the validation images
    test/images/...            test images; ``test/masks/`` is optional (inference)

16-bit images keep their full range through MONAI's ``PILReader`` (PIL mode ``I;16``, read as
float32); the bundle maps them to [0, 1] with a fixed window (``ScaleIntensityRanged``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from .folders import ensure_demo, pair_files, scan_folder, smooth_noise, validate_pairs
from .validation import check_disjoint_ids
from monai_seg.utils import check_free

__all__ = [
    "XRAY_CLASSES",
    "xray_datalist",
    "validate_xray_pairs",
    "xray_split",
    "make_xray_demo",
    "ensure_xray_demo",
]

XRAY_CLASSES = ("background", "soft tissue", "bone")
"""Classes of the demo dataset, by label value."""

_GRAY_MODES = ("L", "I;16", "I;16L", "I;16B", "I")  # PIL modes of 8-bit, 16-bit and 32-bit integer grayscale
_FILE = re.compile(r"(?P<id>.+)\.(?:png|tiff?)", re.IGNORECASE)
_SECTIONS = ("train", "val", "test")


def xray_datalist(
    dataset_dir: str | os.PathLike, section: str = "train", skip_invalid: bool | str = False
) -> Sequence[dict]:
    """Pair ``<section>/images/<name>`` with ``<section>/masks/<name>`` (same stem) into a MONAI datalist.

    Only file names are checked here; :func:`validate_xray_pairs` opens the files. Without a
    ``masks/`` folder the items have no ``"label"``.

    Args:
        dataset_dir: folder holding the sections.
        section: ``"train"``, ``"val"`` or ``"test"``.
        skip_invalid: log and drop an image without mask (or a mask without image) instead of raising.

    Returns:
        ``[{"image", "label", "id"}]`` sorted by id (the file stem; digit runs numerically).

    Raises:
        ValueError: for an unknown section, and naming the folder or file for a missing or empty
            folder, a file that is not PNG or TIFF, two files with the same stem, an image without
            mask or a mask without image.
    """
    if section not in _SECTIONS:
        raise ValueError(f"section must be one of {list(_SECTIONS)}, got {section!r}.")
    root = os.path.join(os.fspath(dataset_dir), section)
    layout = {}
    for key, folder in (("image", "images"), ("label", "masks")):
        path = os.path.join(root, folder)
        if key == "label" and not os.path.isdir(path):
            continue
        layout[key] = (scan_folder(path, {key: _FILE}, "X-ray")[key], os.path.join(path, "{id}.png"))
    return pair_files(layout, f"X-ray {root}", skip_invalid)


def validate_xray_pairs(
    datalist: Sequence[dict],
    num_classes: int = 3,
    progress: bool | None = None,
    skip_invalid: bool | str = False,
    failures_csv: str | os.PathLike | None = None,
) -> Sequence[dict]:
    """Open every file of an X-ray datalist: grayscale images (8- or 16-bit); masks of the image's
    size with values in ``0..num_classes-1``.

    Args:
        datalist: output of :func:`xray_datalist`.
        num_classes: number of classes, background included.
        progress: show a tqdm progress bar; None: for large datalists.
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).
        failures_csv: with ``skip_invalid``, write the dropped cases to this CSV (``file,error``).

    Returns:
        ``datalist`` itself when every case passes, otherwise the good cases.

    Raises:
        ValueError: naming the file, see :func:`monai_seg.data.folders.validate_pairs`.
    """
    masks = {"label": [range(num_classes)]}
    return validate_pairs(datalist, "X-ray", _GRAY_MODES, masks, None, progress, skip_invalid, failures_csv)


def xray_split(
    dataset_dir: str | os.PathLike, num_classes: int = 3, validate: bool = True, skip_invalid: bool | str = False
) -> dict[str, Sequence[dict]]:
    """Training and validation datalists of the X-ray layout: ``train/`` and ``val/``.

    For bundle configs: ``"datalists": "$monai_seg.data.xray_split(@dataset_dir, @num_classes)"``.

    Args:
        dataset_dir: folder holding ``train/`` and ``val/``.
        num_classes: number of classes, background included (checked when ``validate``).
        validate: open and check every file first (:func:`validate_xray_pairs`).
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).

    Returns:
        ``{"train": [...], "val": [...]}``.

    Raises:
        ValueError: when a section has no masks, for an id in both sections, or see
            :func:`xray_datalist` and :func:`validate_xray_pairs`.
    """
    split = {}
    for section in ("train", "val"):
        datalist = xray_datalist(dataset_dir, section, skip_invalid)
        if "label" not in datalist[0]:
            raise ValueError(f"X-ray folder {os.path.join(os.fspath(dataset_dir), section)} has no masks/ folder.")
        split[section] = validate_xray_pairs(datalist, num_classes, skip_invalid=skip_invalid) if validate else datalist
    check_disjoint_ids(split)
    return split


# ----------------------------------------------------------------------------------------------
# synthetic 16-bit radiograph demo data
# ----------------------------------------------------------------------------------------------


def _render_xray(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One limb radiograph-like 16-bit image (H, W) uint16 and its class map (H, W) uint8.

    A tapering soft-tissue band (class 1) crosses the image at an angle, holding one or two long
    bones (class 2) with a bright cortex, rounded ends and trabecular texture, on a dark
    background (class 0). Brightness follows the X-ray path length; a heel-effect gradient, a
    slight blur and quantum noise are added; values span most of the 16-bit range.
    """
    height, width = size
    y, x = np.mgrid[:height, :width].astype(np.float32)
    angle = np.pi / 2 + rng.uniform(-0.5, 0.5)
    cy, cx = height * rng.uniform(0.4, 0.6), width * rng.uniform(0.4, 0.6)
    u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)  # along the limb
    v = (y - cy) * np.cos(angle) - (x - cx) * np.sin(angle)  # across the limb
    half_width = rng.uniform(0.22, 0.32) * width * (1 + 0.12 * np.sin(u / rng.uniform(40, 90) + rng.uniform(0, 6)))
    soft = np.abs(v) < half_width
    signal = 2500 + rng.uniform(14000, 20000) * np.sqrt(np.clip(1 - (v / half_width) ** 2, 0, 1))
    signal *= 1 + 0.04 * smooth_noise(rng, size, 8)

    labels = soft.astype(np.uint8)
    num_bones = int(rng.integers(1, 3))
    offsets = [0.0] if num_bones == 1 else [-0.38, 0.38]
    extent = 0.7 * np.hypot(height, width)
    for offset in offsets:
        radius = rng.uniform(0.16, 0.24) * half_width.mean() * (1.4 if num_bones == 1 else 1.0)
        ends = sorted(rng.uniform((-extent, 0.1 * extent), (-0.1 * extent, extent)))  # one end may show a joint
        along = np.clip(u, ends[0], ends[1])
        distance = np.hypot(u - along, v - offset * half_width)  # to the bone's axis segment: a capsule
        bone = (distance < radius) & soft
        outer = np.sqrt(np.clip(1 - (distance / radius) ** 2, 0, 1))
        inner = np.sqrt(np.clip(1 - (distance / (0.6 * radius)) ** 2, 0, 1))  # hollow medulla: bright cortex
        signal += bone * rng.uniform(18000, 25000) * (outer - 0.45 * inner) * (1 + 0.08 * smooth_noise(rng, size, 2))
        labels[bone] = 2

    signal *= 1 + rng.uniform(-0.1, 0.1) * (y / height - 0.5)  # heel effect
    signal = ndimage.gaussian_filter(signal, 0.8) + rng.normal(0, rng.uniform(300, 700), size)
    return np.clip(signal, 0, 65535).astype(np.uint16), labels


def make_xray_demo(
    dataset_dir: str | os.PathLike,
    num_train: int = 40,
    num_val: int = 10,
    num_test: int = 6,
    size: tuple[int, int] = (320, 256),
    image_format: str = "png",
    seed: int = 0,
    overwrite: bool = False,
) -> str:
    """Write a synthetic 3-class dataset (:data:`XRAY_CLASSES`) in the X-ray layout (see the module docstring).

    Images are 16-bit (``uint16``), masks 8-bit class maps; every section has masks.

    Args:
        dataset_dir: output folder, created if needed.
        num_train: images in ``train/``.
        num_val: images in ``val/``.
        num_test: images in ``test/``.
        size: (H, W) of the images.
        image_format: ``"png"`` or ``"tif"`` for the images (masks are PNG).
        seed: random seed; the same arguments write identical files.
        overwrite: replace existing ``train/``, ``val/`` and ``test/``.

    Returns:
        ``dataset_dir`` as a string.

    Raises:
        ValueError: for an unknown ``image_format``.
        FileExistsError: when an output folder exists and ``overwrite`` is False.
    """
    if image_format not in ("png", "tif"):
        raise ValueError(f"image_format must be 'png' or 'tif', got {image_format!r}.")
    dataset_dir = os.fspath(dataset_dir)
    check_free([os.path.join(dataset_dir, section) for section in _SECTIONS], overwrite)
    rng = np.random.default_rng(seed)
    for section, count in zip(_SECTIONS, (num_train, num_val, num_test)):
        image_dir, mask_dir = (os.path.join(dataset_dir, section, name) for name in ("images", "masks"))
        os.makedirs(image_dir)
        os.makedirs(mask_dir)
        for number in range(count):
            image, labels = _render_xray(rng, size)
            Image.fromarray(image).save(os.path.join(image_dir, f"{section}_{number:03d}.{image_format}"))
            Image.fromarray(labels).save(os.path.join(mask_dir, f"{section}_{number:03d}.png"))
    return dataset_dir


def ensure_xray_demo(dataset_dir: str | os.PathLike) -> str:
    """Create the default demo dataset (:func:`make_xray_demo`) unless ``dataset_dir/train`` exists.

    For bundle configs: ``"$monai_seg.data.ensure_xray_demo(@dataset_dir)"``; safe under concurrent
    calls (see :func:`monai_seg.data.folders.ensure_demo`).

    Args:
        dataset_dir: dataset folder, created if needed.

    Returns:
        ``dataset_dir`` as a string.
    """
    return ensure_demo(dataset_dir, "train", make_xray_demo)
