"""ISIC 2017/2018 skin-lesion segmentation data: reader, validation, split and a synthetic demo
dataset with the same layout.

Layout (``dataset_dir``), one folder per official ISIC split::

    train/ISIC_0000000.jpg                 RGB dermoscopy image, sizes vary
    train/ISIC_0000000_segmentation.png    0/255 lesion mask of the same size
    val/...                                the same for the validation images
    test/...                               the same; masks are optional (inference)

ISIC's own download folders work as they are: :func:`isic_datalist` pairs images and masks by id
across an image folder and a mask folder (``ISIC-2017_Training_Data``,
``ISIC-2017_Training_Part1_GroundTruth``); superpixel maps and non-image files (the metadata CSV)
are ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy.special import expit

from .folders import BINARY_MASK_VALUES, ensure_demo, pair_files, scan_folder, smooth_noise, validate_pairs
from .validation import check_disjoint_ids
from monai_seg.utils import check_free

__all__ = ["isic_datalist", "validate_isic_pairs", "isic_split", "make_isic_demo", "ensure_isic_demo"]

_IMAGE = re.compile(r"(?P<id>ISIC_\d+)\.(?:jpg|jpeg|png)", re.IGNORECASE)
_MASK = re.compile(r"(?P<id>ISIC_\d+)_segmentation\.png", re.IGNORECASE)
_SUPERPIXELS = re.compile(r"ISIC_\d+_superpixels\.png", re.IGNORECASE)
_SECTIONS = ("train", "val", "test")


def isic_datalist(
    image_dir: str | os.PathLike,
    mask_dir: str | os.PathLike | None = None,
    labeled: bool = True,
    skip_invalid: bool | str = False,
) -> Sequence[dict]:
    """Scan ISIC images ``ISIC_xxxxxxx.jpg`` and masks ``ISIC_xxxxxxx_segmentation.png`` into a MONAI datalist.

    Only file names are checked here; :func:`validate_isic_pairs` opens the files.

    Args:
        image_dir: folder of the images (and of the masks when ``mask_dir`` is None).
        mask_dir: folder of the masks, if separate.
        labeled: pair every image with its mask; False lists the images only (masks are ignored).
        skip_invalid: log and drop an image without mask (or a mask without image) instead of raising.

    Returns:
        ``[{"image", "label", "id"}]`` (no ``"label"`` when not ``labeled``) sorted by id, the id
        being ``"ISIC_xxxxxxx"``.

    Raises:
        ValueError: naming the folder or file for a missing or empty folder, a file name outside
            the layout, two files with the same id, an image without mask or a mask without image.
    """
    image_dir = os.fspath(image_dir)
    files = scan_folder(image_dir, {"image": _IMAGE, "label": _MASK}, "ISIC", ignore=_SUPERPIXELS)
    if mask_dir is not None:
        mask_dir = os.fspath(mask_dir)
        files["label"] = scan_folder(mask_dir, {"label": _MASK}, "ISIC", ignore=_SUPERPIXELS)["label"]
    if not labeled:
        return pair_files({"image": (files["image"], "")}, "ISIC", skip_invalid)
    layout = {
        "image": (files["image"], os.path.join(image_dir, "{id}.jpg")),
        "label": (files["label"], os.path.join(mask_dir or image_dir, "{id}_segmentation.png")),
    }
    return pair_files(layout, f"ISIC {image_dir}", skip_invalid)


def validate_isic_pairs(
    datalist: Sequence[dict],
    progress: bool | None = None,
    skip_invalid: bool | str = False,
    failures_csv: str | os.PathLike | None = None,
) -> Sequence[dict]:
    """Open every file of an ISIC datalist: RGB images; masks of the image's size with values 0/255 (or 0/1).

    Args:
        datalist: output of :func:`isic_datalist`.
        progress: show a tqdm progress bar; None: for large datalists.
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).
        failures_csv: with ``skip_invalid``, write the dropped cases to this CSV (``file,error``).

    Returns:
        ``datalist`` itself when every case passes, otherwise the good cases.

    Raises:
        ValueError: naming the file, see :func:`monai_seg.data.folders.validate_pairs`.
    """
    masks = {"label": BINARY_MASK_VALUES}
    return validate_pairs(datalist, "ISIC", ("RGB",), masks, None, progress, skip_invalid, failures_csv)


def isic_split(
    dataset_dir: str | os.PathLike, validate: bool = True, skip_invalid: bool | str = False
) -> dict[str, Sequence[dict]]:
    """Training and validation datalists of the ISIC layout: the official splits ``train/`` and ``val/``.

    For bundle configs: ``"datalists": "$monai_seg.data.isic_split(@dataset_dir)"``.

    Args:
        dataset_dir: folder holding ``train/`` and ``val/``.
        validate: open and check every file first (:func:`validate_isic_pairs`).
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).

    Returns:
        ``{"train": [...], "val": [...]}``.

    Raises:
        ValueError: for an id in both sections, and see :func:`isic_datalist` and :func:`validate_isic_pairs`.
    """
    split = {}
    for section in ("train", "val"):
        datalist = isic_datalist(os.path.join(os.fspath(dataset_dir), section), skip_invalid=skip_invalid)
        split[section] = validate_isic_pairs(datalist, skip_invalid=skip_invalid) if validate else datalist
    check_disjoint_ids(split)
    return split


# ----------------------------------------------------------------------------------------------
# synthetic dermoscopy demo data
# ----------------------------------------------------------------------------------------------


def _lesion_boundary(rng: np.random.Generator, theta: np.ndarray, radius: float) -> np.ndarray:
    """Radius of an irregular star-shaped lesion at angles ``theta``: a few random Fourier modes."""
    boundary = np.ones_like(theta)
    for k in range(2, 7):
        boundary += rng.uniform(0, 0.16 / np.sqrt(k)) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return radius * boundary


def _draw_hairs(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """0-4 thin dark curved hairs as a (H, W) float coverage map in [0, 1]."""
    canvas = Image.new("L", (size[1], size[0]))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(0, 5)):
        start, control, end = rng.uniform((0, 0), size[::-1], (3, 2))
        t = np.linspace(0, 1, 40)[:, None]
        points = (1 - t) ** 2 * start + 2 * t * (1 - t) * control + t**2 * end  # quadratic Bezier
        draw.line([tuple(p) for p in points], fill=255, width=int(rng.integers(1, 3)))
    return np.asarray(canvas, dtype=np.float32) / 255


def _render_lesion(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One dermoscopy-like RGB image (H, W, 3) uint8 and its 0/255 lesion mask (H, W).

    Skin: a random tone with smooth blotches, fine grain and the dark corners of a dermoscope.
    Lesion: an irregular brown blob with a darker core, mottled pigment and a fuzzy border.
    Distractors: faint freckles (not in the mask) and hairs crossing everything.
    """
    height, width = size
    y, x = np.mgrid[:height, :width].astype(np.float32)
    tone = rng.uniform()
    skin = (1 - tone) * np.array([236, 200, 178], np.float32) + tone * np.array([190, 140, 112], np.float32)
    shade = 1 + 0.05 * smooth_noise(rng, size, 20) + 0.025 * smooth_noise(rng, size, 1.5)
    corner = np.hypot((y - height / 2) / (height / 2), (x - width / 2) / (width / 2))
    image = skin * (shade * (1 - 0.7 * np.clip((corner - 0.9) / 0.5, 0, 1)))[..., None]

    for _ in range(rng.integers(0, 4)):  # freckles
        fy, fx, fr = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, 7)
        image *= 1 - 0.18 * np.exp(-((np.hypot(y - fy, x - fx) / fr) ** 2))[..., None]

    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    radius = rng.uniform(0.18, 0.36) * min(size)
    distance, theta = np.hypot(y - cy, x - cx), np.arctan2(y - cy, x - cx)
    boundary = _lesion_boundary(rng, theta, radius)
    alpha = rng.uniform(0.75, 0.95) * expit((boundary - distance) / rng.uniform(1.5, 4))
    lightness = rng.uniform()
    color = (1 - lightness) * np.array([80, 45, 30], np.float32) + lightness * np.array([160, 105, 75], np.float32)
    pigment = (1 + 0.18 * smooth_noise(rng, size, 4)) * (1 - 0.3 * np.exp(-((distance / (0.5 * radius)) ** 2)))
    image = image * (1 - alpha[..., None]) + (color * pigment[..., None]) * alpha[..., None]

    image *= (1 - 0.75 * _draw_hairs(rng, size))[..., None]
    image += rng.normal(0, 3, image.shape)
    mask = np.where(distance <= boundary, 255, 0).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def make_isic_demo(
    dataset_dir: str | os.PathLike,
    num_train: int = 32,
    num_val: int = 8,
    num_test: int = 8,
    seed: int = 0,
    overwrite: bool = False,
) -> str:
    """Write a synthetic dataset in the ISIC layout (see the module docstring).

    Images are landscape, 192-288 pixels high, of varying size (as in ISIC), JPEG; ids run on
    across ``train/``, ``val/`` and ``test/``, every image has its mask.

    Args:
        dataset_dir: output folder, created if needed.
        num_train: images in ``train/``.
        num_val: images in ``val/``.
        num_test: images in ``test/``.
        seed: random seed; the same arguments write identical files.
        overwrite: replace existing ``train/``, ``val/`` and ``test/``.

    Returns:
        ``dataset_dir`` as a string.

    Raises:
        FileExistsError: when an output folder exists and ``overwrite`` is False.
    """
    dataset_dir = os.fspath(dataset_dir)
    folders = [os.path.join(dataset_dir, section) for section in _SECTIONS]
    check_free(folders, overwrite)
    rng = np.random.default_rng(seed)
    next_id = 0
    for folder, count in zip(folders, (num_train, num_val, num_test)):
        os.makedirs(folder)
        for _ in range(count):
            height = int(rng.integers(192, 289))
            image, mask = _render_lesion(rng, (height, int(height * rng.uniform(1.2, 1.5))))
            Image.fromarray(image).save(os.path.join(folder, f"ISIC_{next_id:07d}.jpg"), quality=92)
            Image.fromarray(mask).save(os.path.join(folder, f"ISIC_{next_id:07d}_segmentation.png"))
            next_id += 1
    return dataset_dir


def ensure_isic_demo(dataset_dir: str | os.PathLike) -> str:
    """Create the default demo dataset (:func:`make_isic_demo`) unless ``dataset_dir/train`` exists.

    For bundle configs: ``"$monai_seg.data.ensure_isic_demo(@dataset_dir)"``; safe under concurrent
    calls (see :func:`monai_seg.data.folders.ensure_demo`).

    Args:
        dataset_dir: dataset folder, created if needed.

    Returns:
        ``dataset_dir`` as a string.
    """
    return ensure_demo(dataset_dir, "train", make_isic_demo)
