"""DRIVE retinal-vessel segmentation data: reader, validation, split and a synthetic demo dataset
with the same layout.

Layout (``dataset_dir``), as the DRIVE download unpacks::

    training/images/21_training.tif         RGB fundus photograph, 565 wide x 584 high
    training/1st_manual/21_manual1.gif      0/255 vessel annotation of the first observer
    training/mask/21_training_mask.gif      0/255 field of view (FOV)
    test/images/01_test.tif                 the same for the test images, ids 01-20;
    test/1st_manual/01_manual1.gif          the annotations are optional (inference)
    test/mask/01_test_mask.gif

GIF files are palette images: the bundles read them with ``PILReader(converter=...)`` converting
to 8-bit gray (``"L"``), and so do the checks here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.special import expit

from .folders import BINARY_MASK_VALUES, ensure_demo, pair_files, scan_folder, smooth_noise, validate_pairs
from monai_seg.utils import check_free

__all__ = [
    "DRIVE_IMAGE_SHAPE",
    "drive_datalist",
    "validate_drive_pairs",
    "drive_split",
    "make_drive_demo",
    "ensure_drive_demo",
]

DRIVE_IMAGE_SHAPE = (584, 565)
"""(H, W) of the DRIVE images."""

_SECTIONS = ("training", "test")
_FIRST_ID = {"training": 21, "test": 1}  # DRIVE numbers the test images 01-20, the training images 21-40


def _patterns(section: str) -> dict[str, re.Pattern]:
    """File-name patterns of the image, vessel-annotation and FOV folders of a section."""
    return {
        "image": re.compile(rf"(?P<id>\d+)_{section}\.tiff?", re.IGNORECASE),
        "label": re.compile(r"(?P<id>\d+)_manual1\.gif", re.IGNORECASE),
        "fov": re.compile(rf"(?P<id>\d+)_{section}_mask\.gif", re.IGNORECASE),
    }


def drive_datalist(
    dataset_dir: str | os.PathLike, section: str = "training", skip_invalid: bool | str = False
) -> Sequence[dict]:
    """Scan a DRIVE section into a MONAI datalist.

    Only file names are checked here; :func:`validate_drive_pairs` opens the files. The vessel
    annotations are optional: without a ``1st_manual/`` folder the items have no ``"label"``.

    Args:
        dataset_dir: folder holding ``training/`` and ``test/``.
        section: ``"training"`` or ``"test"``.
        skip_invalid: log and drop an image without annotation or FOV mask (and the reverse) instead of raising.

    Returns:
        ``[{"image", "label", "fov", "id"}]`` sorted by id (``"21"``, ``"22"``, ...).

    Raises:
        ValueError: for an unknown section, and naming the folder or file for a missing or empty
            folder, a file name outside the layout, two files with the same id, or an image without
            annotation or FOV mask (and the reverse).
    """
    if section not in _SECTIONS:
        raise ValueError(f"section must be one of {list(_SECTIONS)}, got {section!r}.")
    root = os.path.join(os.fspath(dataset_dir), section)
    folders = {"image": "images", "label": "1st_manual", "fov": "mask"}
    templates = {"image": f"{{id}}_{section}.tif", "label": "{id}_manual1.gif", "fov": f"{{id}}_{section}_mask.gif"}
    layout = {}
    for key, pattern in _patterns(section).items():
        folder = os.path.join(root, folders[key])
        if key == "label" and not os.path.isdir(folder):
            continue
        files = scan_folder(folder, {key: pattern}, "DRIVE")[key]
        layout[key] = (files, os.path.join(folder, templates[key]))
    return pair_files(layout, f"DRIVE {root}", skip_invalid)


def validate_drive_pairs(
    datalist: Sequence[dict],
    progress: bool | None = None,
    skip_invalid: bool | str = False,
    failures_csv: str | os.PathLike | None = None,
) -> Sequence[dict]:
    """Open every file of a DRIVE datalist: RGB images; vessel and FOV masks of the image's size
    with values 0/255 (or 0/1) once converted to gray.

    Args:
        datalist: output of :func:`drive_datalist`.
        progress: show a tqdm progress bar; None: for large datalists.
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).
        failures_csv: with ``skip_invalid``, write the dropped cases to this CSV (``file,error``).

    Returns:
        ``datalist`` itself when every case passes, otherwise the good cases.

    Raises:
        ValueError: naming the file, see :func:`monai_seg.data.folders.validate_pairs`.
    """
    masks = {"label": BINARY_MASK_VALUES, "fov": BINARY_MASK_VALUES}
    return validate_pairs(datalist, "DRIVE", ("RGB",), masks, "L", progress, skip_invalid, failures_csv)


def drive_split(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.2,
    seed: int = 0,
    validate: bool = True,
    skip_invalid: bool | str = False,
) -> dict[str, list[dict]]:
    """Training and validation datalists from the DRIVE ``training/`` section.

    Each DRIVE image comes from a different subject, so an image split is a subject split.

    Args:
        dataset_dir: folder holding ``training/``.
        val_fraction: fraction of the images held out, rounded, at least one on each side.
        seed: seed of the shuffle; the split is deterministic for a given seed.
        validate: open and check every file first (:func:`validate_drive_pairs`).
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).

    Returns:
        ``{"train": [...], "val": [...]}``, both in id order.

    Raises:
        ValueError: when ``val_fraction`` is not in (0, 1), there are fewer than two images, the
            images have no annotations, or see :func:`drive_datalist` and :func:`validate_drive_pairs`.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    datalist = drive_datalist(dataset_dir, "training", skip_invalid)
    if validate:
        datalist = validate_drive_pairs(datalist, skip_invalid=skip_invalid)
    if len(datalist) < 2 or "label" not in datalist[0]:
        raise ValueError(f"A DRIVE split needs at least 2 annotated training images in {dataset_dir}.")
    num_val = min(max(round(len(datalist) * val_fraction), 1), len(datalist) - 1)
    val = set(np.random.default_rng(seed).permutation(len(datalist))[:num_val].tolist())
    return {
        "train": [item for i, item in enumerate(datalist) if i not in val],
        "val": [item for i, item in enumerate(datalist) if i in val],
    }


# ----------------------------------------------------------------------------------------------
# synthetic fundus demo data
# ----------------------------------------------------------------------------------------------

_SUPERSAMPLE = 2  # vessels are drawn at twice the resolution, then averaged: anti-aliased edges
_DRIVE_FOV_RADIUS = 0.48 * min(DRIVE_IMAGE_SHAPE)  # vessel calibres and steps scale with the FOV radius


def _grow_vessels(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    start: tuple[float, float],
    angle: float,
    width: float,
    bend: float,
    fov: tuple[float, float, float],
) -> None:
    """Draw one vessel tree as a random walk from ``start`` (x, y) that branches and thins out.

    Each step (5 pixels at DRIVE's size) turns by ``bend`` plus noise; with probability 0.06 it
    spawns a thinner side branch (which grows the same way); the walk ends when the vessel is
    thinner than a pixel or leaves the field of view ``fov`` = (centre x, centre y, radius).
    """
    stack = [(start, angle, width, bend)]
    step = 5 * fov[2] / _DRIVE_FOV_RADIUS
    while stack:
        (x, y), angle, width, bend = stack.pop()
        while width >= 1.0 and np.hypot(x - fov[0], y - fov[1]) < fov[2]:
            angle += bend + rng.normal(0, 0.1)
            x_next, y_next = x + step * np.cos(angle), y + step * np.sin(angle)
            s, r = _SUPERSAMPLE, _SUPERSAMPLE * width / 2
            draw.line([(x * s, y * s), (x_next * s, y_next * s)], fill=255, width=max(int(round(2 * r)), 1))
            draw.ellipse([x_next * s - r, y_next * s - r, x_next * s + r, y_next * s + r], fill=255)  # round joint
            x, y, width = x_next, y_next, width * 0.993
            if rng.random() < 0.06:
                side = rng.choice((-1.0, 1.0))
                stack.append(((x, y), angle + side * rng.uniform(0.5, 1.1), width * rng.uniform(0.5, 0.8), 0.0))
                width *= 0.92


def _render_fundus(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fundus-like RGB image (H, W, 3) uint8, its 0/255 vessel mask and 0/255 FOV mask (H, W).

    A circular field of view on black; an orange-red background with a vignette, choroidal
    texture, a dark macula and a bright optic disc; vessel trees grow from the disc, two arcades
    bending around the macula and two nasal trees; vessels are darkest in the green channel.
    """
    height, width = size
    y, x = np.mgrid[:height, :width].astype(np.float32)
    radius = 0.48 * min(size)
    cx, cy = width / 2 + rng.uniform(-0.015, 0.015) * radius, height / 2 + rng.uniform(-0.015, 0.015) * radius
    r = np.hypot(x - cx, y - cy) / radius
    fov = r <= 1
    side = rng.choice((-1.0, 1.0))  # left or right eye: the disc sits nasally
    disc = (cx + side * rng.uniform(0.45, 0.6) * radius, cy + rng.uniform(-0.1, 0.1) * radius)
    macula = (cx - side * rng.uniform(0.05, 0.2) * radius, cy + rng.uniform(-0.05, 0.05) * radius)
    disc_radius = rng.uniform(0.11, 0.14) * radius

    base = rng.uniform((175, 75, 30), (220, 110, 55)).astype(np.float32)
    scale = radius / _DRIVE_FOV_RADIUS
    texture = 1 + 0.05 * smooth_noise(rng, size, 6 * scale) + 0.04 * smooth_noise(rng, size, 30 * scale)
    macula_profile = np.exp(-((np.hypot(x - macula[0], y - macula[1]) / (0.2 * radius)) ** 2))
    image = base * (texture * (1 - 0.4 * r**2) * (1 - 0.35 * macula_profile))[..., None]
    disc_profile = expit((disc_radius - np.hypot(x - disc[0], y - disc[1])) / (0.01 * radius))
    image += disc_profile[..., None] * np.array([50, 110, 80], np.float32)

    canvas = Image.new("L", (width * _SUPERSAMPLE, height * _SUPERSAMPLE))
    draw = ImageDraw.Draw(canvas)
    toward_macula = np.arctan2(macula[1] - disc[1], macula[0] - disc[0])
    for spread, bend in ((0.9, -0.012), (-0.9, 0.012), (np.pi - 0.8, 0.0), (np.pi + 0.8, 0.0)):
        for caliber in (rng.uniform(6, 8) * scale, rng.uniform(4.5, 6) * scale):  # an artery and a vein
            angle = toward_macula + spread + rng.normal(0, 0.15)
            # the arcades bend around the macula: mirrored between left and right eyes
            _grow_vessels(draw, rng, disc, angle, caliber, bend * side, (cx, cy, radius))
    coverage = np.asarray(canvas.resize((width, height), Image.BOX), dtype=np.float32) / 255
    vessels = (coverage >= 0.5) & fov
    darkening = ndimage.gaussian_filter(coverage, 0.7)[..., None] * rng.uniform((0.2, 0.5, 0.35), (0.3, 0.65, 0.5))
    image = image * (1 - darkening)
    image += rng.normal(0, 2.5, image.shape)
    image[~fov] = rng.uniform(0, 6)
    return np.clip(image, 0, 255).astype(np.uint8), vessels.astype(np.uint8) * 255, fov.astype(np.uint8) * 255


def make_drive_demo(
    dataset_dir: str | os.PathLike,
    num_training: int = 12,
    num_test: int = 4,
    seed: int = 0,
    size: tuple[int, int] = DRIVE_IMAGE_SHAPE,
    overwrite: bool = False,
) -> str:
    """Write a synthetic dataset in the DRIVE layout (see the module docstring), annotations included.

    Training ids start at 21, test ids at 01, as in DRIVE.

    Args:
        dataset_dir: output folder, created if needed.
        num_training: images in ``training/``.
        num_test: images in ``test/``.
        seed: random seed; the same arguments write identical files.
        size: (H, W) of the images, (584, 565) as in DRIVE.
        overwrite: replace existing ``training/`` and ``test/``.

    Returns:
        ``dataset_dir`` as a string.

    Raises:
        FileExistsError: when an output folder exists and ``overwrite`` is False.
    """
    dataset_dir = os.fspath(dataset_dir)
    check_free([os.path.join(dataset_dir, section) for section in _SECTIONS], overwrite)
    rng = np.random.default_rng(seed)
    for section, count in zip(_SECTIONS, (num_training, num_test)):
        folders = [os.path.join(dataset_dir, section, name) for name in ("images", "1st_manual", "mask")]
        for folder in folders:
            os.makedirs(folder)
        for number in range(_FIRST_ID[section], _FIRST_ID[section] + count):
            image, vessels, fov = _render_fundus(rng, size)
            Image.fromarray(image).save(os.path.join(folders[0], f"{number:02d}_{section}.tif"))
            Image.fromarray(vessels).save(os.path.join(folders[1], f"{number:02d}_manual1.gif"))
            Image.fromarray(fov).save(os.path.join(folders[2], f"{number:02d}_{section}_mask.gif"))
    return dataset_dir


def ensure_drive_demo(dataset_dir: str | os.PathLike) -> str:
    """Create the default demo dataset (:func:`make_drive_demo`) unless ``dataset_dir/training`` exists.

    For bundle configs: ``"$monai_seg.data.ensure_drive_demo(@dataset_dir)"``; safe under concurrent
    calls (see :func:`monai_seg.data.folders.ensure_demo`).

    Args:
        dataset_dir: dataset folder, created if needed.

    Returns:
        ``dataset_dir`` as a string.
    """
    return ensure_demo(dataset_dir, "training", make_drive_demo)
