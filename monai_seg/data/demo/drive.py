"""Synthetic fundus demo data in the DRIVE layout (:mod:`monai_seg.data.drive`): vessel trees growing
from the optic disc inside a circular field of view."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.special import expit

from monai_seg.utils import check_free

from ..drive import DRIVE_IMAGE_SHAPE
from .base import register_demo, smooth_noise

__all__ = ["generate"]

SECTIONS = ("training", "test")
_FIRST_ID = {"training": 21, "test": 1}  # DRIVE numbers the test images 01-20, the training images 21-40

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


def generate(
    dataset_dir: str | os.PathLike,
    num_training: int = 12,
    num_test: int = 4,
    seed: int = 0,
    size: tuple[int, int] = DRIVE_IMAGE_SHAPE,
    overwrite: bool = False,
) -> str:
    """Write a synthetic dataset in the DRIVE layout (:mod:`monai_seg.data.drive`), annotations included.

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
    check_free([os.path.join(dataset_dir, section) for section in SECTIONS], overwrite)
    rng = np.random.default_rng(seed)
    for section, count in zip(SECTIONS, (num_training, num_test)):
        folders = [os.path.join(dataset_dir, section, name) for name in ("images", "1st_manual", "mask")]
        for folder in folders:
            os.makedirs(folder)
        for number in range(_FIRST_ID[section], _FIRST_ID[section] + count):
            image, vessels, fov = _render_fundus(rng, size)
            Image.fromarray(image).save(os.path.join(folders[0], f"{number:02d}_{section}.tif"))
            Image.fromarray(vessels).save(os.path.join(folders[1], f"{number:02d}_manual1.gif"))
            Image.fromarray(fov).save(os.path.join(folders[2], f"{number:02d}_{section}_mask.gif"))
    return dataset_dir


register_demo("drive", generate, marker="training")
