"""Kaggle 2016 ultrasound nerve (brachial plexus) segmentation data: reader, validation,
subject-wise splits and a synthetic demo dataset with the same layout.

Layout (``dataset_dir``)::

    train/{subject}_{img}.tif         uint8 grayscale, 580 wide x 420 high
    train/{subject}_{img}_mask.tif    uint8 0/255 nerve mask, empty in about half the images
    test/{img}.tif                    test images, numbered from 1
    train_masks.csv                   subject,img,pixels (Kaggle RLE of the training masks)
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import tifffile
from scipy import ndimage
from scipy.special import expit

from .folders import ensure_demo, pair_files
from .rle import NERVE_IMAGE_SHAPE, rle_encode
from .validation import check_cases, check_finite
from monai_seg.utils import atomic_write_csv, check_free

__all__ = [
    "nerve_datalist",
    "validate_nerve_pairs",
    "subject_split",
    "subject_kfold",
    "nerve_split",
    "make_nerve_demo",
    "NERVE_DEMO_STYLES",
    "make_nerve_test_images",
    "ensure_nerve_demo",
]

_TRAIN_NAME = re.compile(r"(\d+)_(\d+)(_mask)?\.tif", re.IGNORECASE)
_TEST_NAME = re.compile(r"(\d+)\.tif", re.IGNORECASE)
_TRAIN_STREAM, _TEST_STREAM = 0, 1  # independent random streams: test images show other subjects
_SHIFT = 24  # largest probe shift between the images of one subject, in pixels
_IMAGES_PER_TEST_SUBJECT = 120  # as in the Kaggle data


# ----------------------------------------------------------------------------------------------
# reader and validation
# ----------------------------------------------------------------------------------------------


def _list_folder(folder: str) -> list[str]:
    """Sorted names of the visible files in ``folder``; ValueError when missing or empty."""
    if not os.path.isdir(folder):
        raise ValueError(f"Nerve dataset folder {folder} does not exist.")
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith("."))
    if not names:
        raise ValueError(f"Nerve dataset folder {folder} has no images.")
    return names


def _match_name(pattern: re.Pattern, folder: str, name: str, expected: str) -> re.Match:
    """Match a file name against the layout; ValueError naming the file otherwise."""
    match = pattern.fullmatch(name)
    if match is None:
        raise ValueError(f"{os.path.join(folder, name)} does not follow the Kaggle nerve naming {expected}.")
    return match


def _train_datalist(folder: str, skip_invalid: bool | str = False) -> list[dict]:
    """Pair ``{subject}_{img}.tif`` with ``{subject}_{img}_mask.tif`` in ``folder``."""
    images: dict[str, str] = {}
    masks: dict[str, str] = {}
    for name in _list_folder(folder):
        match = _match_name(_TRAIN_NAME, folder, name, "'{subject}_{img}.tif' / '{subject}_{img}_mask.tif'")
        key = f"{int(match[1])}_{int(match[2])}"  # "1_01.tif" is image 1_1
        files = masks if match[3] else images
        path = os.path.join(folder, name)
        if key in files:
            raise ValueError(f"{path} and {files[key]} have the same id {key}.")
        files[key] = path
    layout = {
        "image": (images, os.path.join(folder, "{id}.tif")),
        "label": (masks, os.path.join(folder, "{id}_mask.tif")),
    }
    datalist = []
    for item in pair_files(layout, f"Kaggle nerve {folder}", skip_invalid):
        subject, img = (int(part) for part in item["id"].split("_"))
        datalist.append(
            {"image": item["image"], "label": item["label"], "subject": subject, "img": img, "id": item["id"]}
        )
    return datalist


def _test_datalist(folder: str) -> list[dict]:
    """List ``{img}.tif`` in ``folder``."""
    images: dict[int, str] = {}
    for name in _list_folder(folder):
        img = int(_match_name(_TEST_NAME, folder, name, "'{img}.tif'")[1])
        path = os.path.join(folder, name)
        if img in images:
            raise ValueError(f"{path} and {images[img]} have the same id {img}.")
        images[img] = path
    return [{"image": images[img], "img": img} for img in sorted(images)]


def nerve_datalist(
    dataset_dir: str | os.PathLike, section: str = "train", skip_invalid: bool | str = False
) -> list[dict]:
    """Scan a Kaggle nerve dataset folder into a MONAI datalist.

    Only file names are checked here; :func:`validate_nerve_pairs` opens the files.

    Args:
        dataset_dir: folder holding ``train/`` and ``test/``.
        section: ``"train"`` for the image/mask pairs, ``"test"`` for the test images.
        skip_invalid: log and drop an image without mask (or a mask without image) instead of raising.

    Returns:
        For ``"train"``: ``[{"image", "label", "subject", "img", "id"}]`` sorted by (subject, img),
        ``id`` being the file stem ``"{subject}_{img}"``. For ``"test"``: ``[{"image", "img"}]``
        sorted by img.

    Raises:
        ValueError: for an unknown section, and naming the folder or file for a missing or empty
            folder, a file name outside the layout, an image without mask, a mask without image,
            or two files with the same id.
    """
    if section not in ("test", "train"):
        raise ValueError(f"section must be one of ['test', 'train'], got {section!r}.")
    folder = os.path.join(os.fspath(dataset_dir), section)
    return _train_datalist(folder, skip_invalid) if section == "train" else _test_datalist(folder)


def _read_tif(path: str, read_data: bool) -> tuple[tuple[int, ...], np.ndarray | None]:
    """Check that ``path`` is a complete single-page 2D grayscale TIF.

    Args:
        path: TIF file.
        read_data: also read the pixel array (otherwise only the header is parsed).

    Returns:
        The (H, W) shape and the array, or None when ``read_data`` is False.

    Raises:
        ValueError: naming the file when it cannot be parsed, is truncated, is not 2D grayscale, or
            holds NaN or infinite values (floating-point data is always read).
    """
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            data_end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
            if data_end > tif.filehandle.size:
                raise ValueError(f"truncated: pixel data ends at byte {data_end}, file size {tif.filehandle.size}")
            num_pages, shape, floating = len(tif.pages), page.shape, np.dtype(page.dtype).kind == "f"
            array = page.asarray() if read_data or floating else None
    except Exception as err:
        raise ValueError(f"Cannot read TIF {path}: {err}") from err
    if num_pages != 1 or len(shape) != 2:
        raise ValueError(f"{path} is not a 2D grayscale image: {num_pages} page(s) of shape {shape}.")
    if floating:
        check_finite(path, array)
    return shape, array


def _check_mask_values(path: str, mask: np.ndarray) -> None:
    """ValueError naming ``path`` unless the mask values are within {0, 255} or within {0, 1}."""
    top = mask.max()
    if top not in (0, 1, 255) or not np.all((mask == 0) | (mask == top)):
        values = np.unique(mask).tolist()
        raise ValueError(f"Mask {path} has values {values}, expected only 0 and 255 (or 0 and 1).")


def validate_nerve_pairs(
    datalist: Sequence[dict],
    progress: bool | None = None,
    skip_invalid: bool | str = False,
    failures_csv: str | os.PathLike | None = None,
) -> Sequence[dict]:
    """Open every file of a nerve datalist and check it.

    Images: a complete, single-page, 2D grayscale TIF (only the header is read). Masks (items
    with ``"label"``): the same, with the image's size and values within {0, 255} or {0, 1}.

    Args:
        datalist: output of :func:`nerve_datalist` (train or test).
        progress: show a tqdm progress bar; None: for large datalists.
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).
        failures_csv: with ``skip_invalid``, write the dropped cases to this CSV (``file,error``).

    Returns:
        ``datalist`` itself when every case passes (so that the call can be chained in a bundle
        config), otherwise the good cases.

    Raises:
        ValueError: naming the file for an unreadable or truncated TIF, a non-2D or multi-channel
            image, NaN or infinite values, an image/mask size mismatch, or mask values outside
            {0, 255} / {0, 1}.
    """
    return check_cases(datalist, _check_nerve_item, "Kaggle nerve", skip_invalid, progress, failures_csv)


def _check_nerve_item(item: dict) -> None:
    """Check one item of :func:`validate_nerve_pairs`."""
    image_shape, _ = _read_tif(item["image"], read_data=False)
    if "label" not in item:
        return
    mask_shape, mask = _read_tif(item["label"], read_data=True)
    if mask_shape != image_shape:
        raise ValueError(
            f"Mask {item['label']} is {mask_shape[0]}x{mask_shape[1]} (HxW) but its image "
            f"{item['image']} is {image_shape[0]}x{image_shape[1]}."
        )
    _check_mask_values(item["label"], mask)


# ----------------------------------------------------------------------------------------------
# splits by subject
# ----------------------------------------------------------------------------------------------


def _images_per_subject(datalist: Sequence[dict]) -> Counter:
    """Count the items of each subject; ValueError for items without ``"subject"``."""
    for item in datalist:
        if "subject" not in item:
            raise ValueError(f"Datalist item {item.get('image')} has no 'subject': split the 'train' datalist.")
    return Counter(item["subject"] for item in datalist)


def _split_by_subjects(datalist: Sequence[dict], val_subjects: set[int]) -> tuple[list[dict], list[dict]]:
    """(train, val) items, val holding the items of ``val_subjects``, both in datalist order."""
    train = [item for item in datalist if item["subject"] not in val_subjects]
    val = [item for item in datalist if item["subject"] in val_subjects]
    return train, val


def subject_split(
    datalist: Sequence[dict], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Split a datalist into training and validation subjects (never splitting a subject).

    Args:
        datalist: items with a ``"subject"`` key (:func:`nerve_datalist` ``"train"``).
        val_fraction: fraction of the subjects held out, rounded, at least one subject on each side.
        seed: seed of the subject shuffle; the split is deterministic for a given seed.

    Returns:
        (train, val) item lists in datalist order.

    Raises:
        ValueError: when ``val_fraction`` is not in (0, 1) or there are fewer than two subjects.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    subjects = sorted(_images_per_subject(datalist))
    if len(subjects) < 2:
        raise ValueError(f"A subject split needs at least 2 subjects, got {len(subjects)}.")
    num_val = min(max(round(len(subjects) * val_fraction), 1), len(subjects) - 1)
    order = np.random.default_rng(seed).permutation(len(subjects))
    return _split_by_subjects(datalist, {subjects[i] for i in order[:num_val]})


def subject_kfold(
    datalist: Sequence[dict], num_folds: int = 5, fold: int = 0, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Split a datalist for k-fold cross validation by subject.

    Subjects are shuffled (by ``seed``), then assigned, largest first, to the fold holding the
    fewest images, so folds are balanced in image count and each subject is in exactly one fold.

    Args:
        datalist: items with a ``"subject"`` key (:func:`nerve_datalist` ``"train"``).
        num_folds: number of folds, at least 2.
        fold: index of the validation fold, in ``[0, num_folds)``.
        seed: seed of the subject shuffle; the folds are deterministic for a given seed.

    Returns:
        (train, val) item lists in datalist order, val being fold ``fold``.

    Raises:
        ValueError: when ``num_folds < 2``, ``fold`` is out of range, or there are fewer subjects
            than folds.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}.")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}.")
    counts = _images_per_subject(datalist)
    if len(counts) < num_folds:
        raise ValueError(f"{num_folds} folds need at least {num_folds} subjects, got {len(counts)}.")
    subjects = sorted(counts)
    shuffled = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    shuffled.sort(key=lambda subject: -counts[subject])  # stable: equal counts keep the shuffled order
    fold_sizes = [0] * num_folds
    folds: list[set[int]] = [set() for _ in range(num_folds)]
    for subject in shuffled:
        lightest = int(np.argmin(fold_sizes))
        folds[lightest].add(subject)
        fold_sizes[lightest] += counts[subject]
    return _split_by_subjects(datalist, folds[fold])


def nerve_split(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.2,
    fold: int | None = None,
    num_folds: int = 5,
    seed: int = 0,
    validate: bool = True,
    skip_invalid: bool | str = False,
) -> dict[str, list[dict]]:
    """Training and validation datalists of a Kaggle nerve dataset, split by subject.

    For bundle configs, e.g. ``"datasplit": "$monai_seg.data.nerve_split(@dataset_dir)"`` and
    ``"data": "$@datasplit['train']"``.

    Args:
        dataset_dir: folder holding ``train/``.
        val_fraction: held-out fraction of subjects when ``fold`` is None (:func:`subject_split`).
        fold: validation fold of a :func:`subject_kfold` split; None for a single split.
        num_folds: number of folds when ``fold`` is given.
        seed: seed of the split.
        validate: open and check every file first (:func:`validate_nerve_pairs`).
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).

    Returns:
        ``{"train": [...], "val": [...]}``.

    Raises:
        ValueError: see :func:`nerve_datalist`, :func:`validate_nerve_pairs` and the split functions.
    """
    datalist = nerve_datalist(dataset_dir, "train", skip_invalid)
    if validate:
        datalist = validate_nerve_pairs(datalist, skip_invalid=skip_invalid)
    if fold is None:
        train, val = subject_split(datalist, val_fraction=val_fraction, seed=seed)
    else:
        train, val = subject_kfold(datalist, num_folds=num_folds, fold=fold, seed=seed)
    return {"train": train, "val": val}


# ----------------------------------------------------------------------------------------------
# synthetic ultrasound demo data
# ----------------------------------------------------------------------------------------------


class _Subject(NamedTuple):
    """Anatomy of one synthetic subject: echogenicity canvas and nerve pose (canvas pixels)."""

    anatomy: np.ndarray  # (H + 2 * _SHIFT, W + 2 * _SHIFT) float32 mean echogenicity
    center: tuple[float, float]  # nerve centre (y, x)
    axes: tuple[float, float]  # nerve semi-axes (vertical, horizontal)
    angle: float  # nerve tilt in radians


def _speckle_bank(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Fully developed speckle (Rayleigh amplitude of a smoothed complex Gaussian field), mean 1.

    The grains are wider than high, as in B-mode images. The bank is twice the image size in
    each direction; images take random crops of it.
    """
    field = rng.standard_normal((2, 2 * size[0], 2 * size[1]), dtype=np.float32)
    field = ndimage.gaussian_filter(field, sigma=(0, 0.7, 1.6))
    amplitude = np.hypot(field[0], field[1])
    return amplitude / amplitude.mean()


def _tissue(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mean echogenicity of soft tissue: smooth blotches plus curved, roughly horizontal bright
    fascia bands, attenuated with depth, under a bright skin line. ``y``, ``x``: open grids."""
    height, width = y.shape[0], x.shape[1]
    coarse = rng.standard_normal((height // 40 + 2, width // 40 + 2))
    tissue = 0.45 + 0.08 * ndimage.zoom(coarse, (height / coarse.shape[0], width / coarse.shape[1]), order=3)
    for depth in np.sort(rng.uniform(0.1, 0.95, rng.integers(4, 8))) * height:
        tilt, bend, period, phase = rng.uniform((-0.1, 5, 80, 0), (0.1, 25, 250, 2 * np.pi))
        band = depth + tilt * x + bend * np.sin(x / period + phase)
        tissue = tissue + rng.uniform(0.2, 0.6) * np.exp(-(((y - band) / rng.uniform(2, 10)) ** 2))
    return tissue * (1.0 - 0.45 * y / height) + 0.5 * np.exp(-y / 12.0)


def _add_artery(
    tissue: np.ndarray, rng: np.random.Generator, y: np.ndarray, x: np.ndarray, nerve: tuple[float, float]
) -> np.ndarray:
    """An artery beside the nerve: an anechoic disc with a thin bright wall, a dark distractor."""
    center = (nerve[0] + rng.uniform(-60, 60), nerve[1] + rng.choice((-1, 1)) * rng.uniform(80, 130))
    radius = np.hypot(y - center[0], x - center[1]) / rng.uniform(14, 22)
    return tissue * (1 - 0.9 * expit((1 - radius) / 0.05)) + 0.4 * np.exp(-(((radius - 1.05) / 0.08) ** 2))


def _make_subject(rng: np.random.Generator, size: tuple[int, int]) -> _Subject:
    """Draw one subject: tissue, an artery and the nerve pose, on a canvas that leaves room for
    probe shifts of up to ``_SHIFT`` pixels."""
    y, x = np.ogrid[: size[0] + 2 * _SHIFT, : size[1] + 2 * _SHIFT]
    center = (rng.uniform(0.3, 0.7) * size[0] + _SHIFT, rng.uniform(0.25, 0.75) * size[1] + _SHIFT)
    anatomy = _add_artery(_tissue(rng, y, x), rng, y, x, center)
    axes = (rng.uniform(18, 32), rng.uniform(32, 55))
    return _Subject(anatomy.astype(np.float32), center, axes, float(rng.uniform(-0.35, 0.35)))


def _nerve_window(
    center: tuple[float, float], axes: tuple[float, float], angle: float, size: tuple[int, int]
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray]:
    """Image window around a tilted ellipse: (window, normalised radius, u, v) where the radius is
    1 on the ellipse and (u, v) are the pixel offsets along the ellipse axes."""
    reach = 1.3 * max(axes)
    top, left = max(int(center[0] - reach), 0), max(int(center[1] - reach), 0)
    bottom, right = min(int(center[0] + reach) + 1, size[0]), min(int(center[1] + reach) + 1, size[1])
    y, x = np.ogrid[top:bottom, left:right]
    dy, dx = y - center[0], x - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = dy * np.cos(angle) - dx * np.sin(angle)
    radius = np.sqrt((v / axes[0]) ** 2 + (u / axes[1]) ** 2)
    return (slice(top, bottom), slice(left, right)), radius, u, v


def _render(
    subject: _Subject, speckle: np.ndarray, rng: np.random.Generator, present: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One ultrasound image and its 0/255 nerve mask (empty unless ``present``), half the size of
    the ``speckle`` bank (:func:`_speckle_bank`).

    The probe shifts by up to ``_SHIFT`` pixels; the nerve moves and deforms slightly; a present
    nerve is a hypoechoic ellipse with honeycomb fascicles and a bright hyperechoic rim; an
    absent one is at most a faint trace.
    """
    size = (speckle.shape[0] // 2, speckle.shape[1] // 2)
    shift_y, shift_x = rng.integers(0, 2 * _SHIFT + 1, 2)
    image = subject.anatomy[shift_y : shift_y + size[0], shift_x : shift_x + size[1]].copy()
    center = (
        subject.center[0] - shift_y + rng.uniform(-6, 6),
        subject.center[1] - shift_x + rng.uniform(-6, 6),
    )
    axes = (subject.axes[0] * rng.uniform(0.85, 1.15), subject.axes[1] * rng.uniform(0.85, 1.15))
    window, radius, u, v = _nerve_window(center, axes, subject.angle + rng.uniform(-0.1, 0.1), size)
    strength = rng.uniform(0.8, 1.2) if present else rng.uniform(0.0, 0.15)
    inside = expit((1 - radius) / 0.05)
    fascicles = np.cos(u / 2.5) * np.cos(v / 2.5)
    rim = np.exp(-(((radius - 1) / 0.12) ** 2))
    image[window] *= 1 + strength * (inside * (0.25 * fascicles - 0.55) + 1.3 * rim)
    offset_y, offset_x = rng.integers(0, size[0] + 1), rng.integers(0, size[1] + 1)
    image *= speckle[offset_y : offset_y + size[0], offset_x : offset_x + size[1]]
    image = np.clip(image * rng.uniform(200, 260), 0, 255).astype(np.uint8)
    mask = np.zeros(size, dtype=np.uint8)
    if present:
        mask[window][radius <= 1] = 255
    return image, mask


def _make_fascicle_subject(rng: np.random.Generator, size: tuple[int, int]) -> _Subject:
    """Draw one subject of the ``"fascicles"`` style: shaded muscle with oblique striations, bright
    reflectors casting acoustic shadows, one or two anechoic veins, and a nerve anywhere in the
    image, of any size from small to large, elongated in any direction."""
    height, width = size[0] + 2 * _SHIFT, size[1] + 2 * _SHIFT
    y, x = np.ogrid[:height, :width]
    coarse = rng.standard_normal((height // 60 + 2, width // 60 + 2))
    anatomy = 0.5 + 0.12 * ndimage.zoom(coarse, (height / coarse.shape[0], width / coarse.shape[1]), order=1)
    theta, period = rng.uniform(-0.8, 0.8), rng.uniform(12, 30)
    anatomy = anatomy + rng.uniform(0.05, 0.12) * np.sin((y * np.cos(theta) + x * np.sin(theta)) / period * 2 * np.pi)
    for _ in range(rng.integers(1, 4)):  # reflector and the shadow below it
        top, left, half = rng.uniform(0.1, 0.8) * height, rng.uniform(0, width), rng.uniform(6, 20)
        column = np.abs(x - left) < half
        anatomy = anatomy + 0.6 * (column & (np.abs(y - top) < 3)) - 0.25 * (column & (y > top + 3))
    center = (rng.uniform(0.15, 0.85) * size[0] + _SHIFT, rng.uniform(0.15, 0.85) * size[1] + _SHIFT)
    for _ in range(rng.integers(1, 3)):  # veins: dark like the nerve's fascicles, but no nerve
        vein = (rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width)
        if np.hypot(vein[0] - center[0], vein[1] - center[1]) > 90:
            radius = np.hypot((y - vein[0]) / rng.uniform(8, 18), (x - vein[1]) / rng.uniform(10, 28))
            anatomy = anatomy * (1 - 0.8 * expit((1 - radius) / 0.08))
    axes = (rng.uniform(15, 40), rng.uniform(18, 50))
    return _Subject(np.clip(anatomy, 0.05, None).astype(np.float32), center, axes, float(rng.uniform(-np.pi, np.pi)))


def _render_fascicles(
    subject: _Subject, speckle: None, rng: np.random.Generator, present: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One image and 0/255 mask of the ``"fascicles"`` style: a present nerve is a mildly bright
    oval holding a few dark round fascicles, without a rim; fresh isotropic gamma speckle and a
    per-image gain and contrast (gamma) change."""
    size = (subject.anatomy.shape[0] - 2 * _SHIFT, subject.anatomy.shape[1] - 2 * _SHIFT)
    shift_y, shift_x = rng.integers(0, 2 * _SHIFT + 1, 2)
    image = subject.anatomy[shift_y : shift_y + size[0], shift_x : shift_x + size[1]].copy()
    center = (subject.center[0] - shift_y + rng.uniform(-8, 8), subject.center[1] - shift_x + rng.uniform(-8, 8))
    axes = (subject.axes[0] * rng.uniform(0.8, 1.2), subject.axes[1] * rng.uniform(0.8, 1.2))
    window, radius, u, v = _nerve_window(center, axes, subject.angle + rng.uniform(-0.2, 0.2), size)
    mask = np.zeros(size, dtype=np.uint8)
    if present:
        inside = expit((1 - radius) / 0.08)
        dots = np.zeros_like(radius)
        for _ in range(rng.integers(3, 8)):  # fascicles at random places inside the oval
            r, phi = 0.65 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
            du, dv = u - r * axes[1] * np.cos(phi), v - r * axes[0] * np.sin(phi)
            dots = np.maximum(dots, np.exp(-(du**2 + dv**2) / (2 * rng.uniform(2, 5) ** 2)))
        image[window] *= 1 + rng.uniform(0.4, 0.7) * inside - 0.6 * dots * inside
        mask[window][radius <= 1] = 255
    grains = ndimage.gaussian_filter(rng.gamma(2.0, 0.5, size).astype(np.float32), sigma=1.0)
    image = (image * grains / grains.mean()) ** rng.uniform(0.8, 1.25)
    return np.clip(image * rng.uniform(150, 260), 0, 255).astype(np.uint8), mask


def _no_bank(rng: np.random.Generator, size: tuple[int, int]) -> None:
    """No shared texture bank: the ``"fascicles"`` style draws fresh speckle for every image."""
    return None


class _Style(NamedTuple):
    """A way of drawing synthetic nerve data: shared texture bank, subject and image renderer."""

    bank: Callable[[np.random.Generator, tuple[int, int]], np.ndarray | None]
    subject: Callable[[np.random.Generator, tuple[int, int]], _Subject]
    render: Callable[..., tuple[np.ndarray, np.ndarray]]


NERVE_DEMO_STYLES = {
    "speckle": _Style(_speckle_bank, _make_subject, _render),
    "fascicles": _Style(_no_bank, _make_fascicle_subject, _render_fascicles),
}
"""Generators of :func:`make_nerve_demo`: ``"speckle"`` (the bundle's demo: a dark ring-bordered
nerve beside an artery in Rayleigh speckle) and ``"fascicles"`` (another texture, contrast, nerve
appearance, sizes and positions, for checking that what learns on the demo is not tuned to it)."""


def _write_tif(path: str, array: np.ndarray) -> None:
    """Write a uint8 grayscale TIF without date or description, so that bytes are reproducible."""
    tifffile.imwrite(path, array, photometric="minisblack", metadata=None)


def make_nerve_test_images(
    test_dir: str | os.PathLike,
    num_images: int,
    seed: int = 0,
    size: tuple[int, int] = NERVE_IMAGE_SHAPE,
    overwrite: bool = False,
    style: str = "speckle",
    masks_csv: str | os.PathLike | None = None,
) -> str:
    """Write synthetic Kaggle-nerve test images ``{img}.tif``, img = 1..num_images.

    Images come from ``ceil(num_images / 120)`` synthetic subjects (about 120 images each, as in
    the Kaggle data), in shuffled order, with a nerve in about half of them.

    Args:
        test_dir: output folder, created if needed.
        num_images: number of images.
        seed: random seed; the same seed writes identical files.
        size: (H, W) of the images.
        overwrite: replace an existing ``test_dir``.
        style: a key of :data:`NERVE_DEMO_STYLES`.
        masks_csv: if given, the answer key is written there: ``img,pixels`` with the RLE of each
            test image's true mask (empty for the images without a nerve), the submission's format.

    Returns:
        ``test_dir`` as a string.

    Raises:
        FileExistsError: when ``test_dir`` (or ``masks_csv``) exists and ``overwrite`` is False.
        ValueError: for an unknown ``style``.
    """
    test_dir = os.fspath(test_dir)
    draw = _nerve_style(style)
    check_free([test_dir] + ([os.fspath(masks_csv)] if masks_csv is not None else []), overwrite)
    os.makedirs(test_dir)
    rng = np.random.default_rng([seed, _TEST_STREAM])
    bank = draw.bank(rng, size)
    subjects = [draw.subject(rng, size) for _ in range(-(-num_images // _IMAGES_PER_TEST_SUBJECT))]
    rows = []
    for img in range(1, num_images + 1):
        subject = subjects[rng.integers(len(subjects))]
        image, mask = draw.render(subject, bank, rng, present=bool(rng.random() < 0.5))
        _write_tif(os.path.join(test_dir, f"{img}.tif"), image)
        rows.append((img, rle_encode(mask)))
    if masks_csv is not None:
        atomic_write_csv(masks_csv, ["img", "pixels"], rows)
    return test_dir


def _nerve_style(style: str) -> _Style:
    """The generator of ``style``; ValueError naming the known ones otherwise."""
    if style not in NERVE_DEMO_STYLES:
        raise ValueError(f"unknown nerve demo style {style!r}, expected one of {list(NERVE_DEMO_STYLES)}.")
    return NERVE_DEMO_STYLES[style]


def make_nerve_demo(
    dataset_dir: str | os.PathLike,
    num_subjects: int = 10,
    images_per_subject: int = 12,
    num_test: int = 20,
    seed: int = 0,
    size: tuple[int, int] = NERVE_IMAGE_SHAPE,
    overwrite: bool = False,
    style: str = "speckle",
) -> str:
    """Write a synthetic dataset in the Kaggle nerve layout (see the module docstring).

    Each subject has its own anatomy and nerve position; half of each subject's masks (rounded
    down) are non-empty. ``train_masks.csv`` holds the RLE of the written masks and
    ``test_masks.csv`` the answer key of ``test/`` (``img,pixels``, the submission's format), which
    the Kaggle layout does not have. The images are meant to be learnable by a small U-Net in a few
    epochs.

    Args:
        dataset_dir: output folder, created if needed.
        num_subjects: number of training subjects (ids 1..num_subjects).
        images_per_subject: training images per subject (img 1..images_per_subject).
        num_test: number of test images (:func:`make_nerve_test_images`, other subjects).
        seed: random seed; the same arguments write identical files.
        size: (H, W) of the images, (420, 580) as in Kaggle.
        overwrite: replace existing ``train/``, ``test/``, ``train_masks.csv`` and ``test_masks.csv``.
        style: a key of :data:`NERVE_DEMO_STYLES`: ``"speckle"`` (the bundle's demo) or
            ``"fascicles"`` (data drawn differently, to check a result beyond the demo).

    Returns:
        ``dataset_dir`` as a string.

    Raises:
        FileExistsError: when an output exists and ``overwrite`` is False.
        ValueError: for an unknown ``style``.
    """
    dataset_dir = os.fspath(dataset_dir)
    draw = _nerve_style(style)
    train_dir, csv_path = os.path.join(dataset_dir, "train"), os.path.join(dataset_dir, "train_masks.csv")
    check_free([train_dir, csv_path], overwrite)
    make_nerve_test_images(os.path.join(dataset_dir, "test"), num_test, seed=seed, size=size, overwrite=overwrite,
                           style=style, masks_csv=os.path.join(dataset_dir, "test_masks.csv"))
    os.makedirs(train_dir)
    rng = np.random.default_rng([seed, _TRAIN_STREAM])
    bank = draw.bank(rng, size)
    rows = []
    for subject_id in range(1, num_subjects + 1):
        subject = draw.subject(rng, size)
        present = rng.permutation(images_per_subject) < images_per_subject // 2
        for img in range(1, images_per_subject + 1):
            image, mask = draw.render(subject, bank, rng, present=bool(present[img - 1]))
            _write_tif(os.path.join(train_dir, f"{subject_id}_{img}.tif"), image)
            _write_tif(os.path.join(train_dir, f"{subject_id}_{img}_mask.tif"), mask)
            rows.append((subject_id, img, rle_encode(mask)))
    atomic_write_csv(csv_path, ["subject", "img", "pixels"], rows)
    return dataset_dir


def ensure_nerve_demo(dataset_dir: str | os.PathLike) -> str:
    """Create the default demo dataset (:func:`make_nerve_demo`) unless ``dataset_dir/train`` exists.

    For bundle configs: ``"$monai_seg.data.ensure_nerve_demo(@dataset_dir)"``. The data is
    written to a hidden temporary folder and moved into place, ``train/`` last, so concurrent
    calls (one per distributed rank) never see a partial dataset. Existing ``test/`` or
    ``train_masks.csv`` are kept.

    Args:
        dataset_dir: dataset folder, created if needed.

    Returns:
        ``dataset_dir`` as a string.
    """
    return ensure_demo(dataset_dir, "train", make_nerve_demo)
