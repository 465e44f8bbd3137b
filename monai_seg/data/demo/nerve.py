"""Synthetic ultrasound demo data in the Kaggle nerve layout (:mod:`monai_seg.data.nerve`): subjects with
their own anatomy and nerve pose, and a test set with its answer key."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tifffile
from scipy import ndimage
from scipy.special import expit

from monai_seg.utils import check_free

from ..rle import NERVE_IMAGE_SHAPE, rle_encode
from .base import register_demo
from monai_seg.utils import atomic_write_csv

__all__ = ["generate", "make_nerve_test_images", "NERVE_DEMO_STYLES"]

_TRAIN_STREAM, _TEST_STREAM = 0, 1  # independent random streams: test images show other subjects
_SHIFT = 24  # largest probe shift between the images of one subject, in pixels
_IMAGES_PER_TEST_SUBJECT = 120  # as in the Kaggle data


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
"""Generators of :func:`generate`: ``"speckle"`` (the bundle's demo: a dark ring-bordered
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


def generate(
    dataset_dir: str | os.PathLike,
    num_subjects: int = 10,
    images_per_subject: int = 12,
    num_test: int = 20,
    seed: int = 0,
    size: tuple[int, int] = NERVE_IMAGE_SHAPE,
    overwrite: bool = False,
    style: str = "speckle",
) -> str:
    """Write a synthetic dataset in the Kaggle nerve layout (:mod:`monai_seg.data.nerve`).

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


register_demo("nerve", generate, marker="train")
