"""Synthetic dermoscopy demo data in the ISIC layout (:mod:`monai_seg.data.isic`): irregular pigmented
lesions on skin, with freckles and hairs as distractors."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw
from scipy.special import expit

from monai_seg.utils import check_free

from .base import register_demo, smooth_noise

__all__ = ["generate"]

SECTIONS = ("train", "val", "test")



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


def generate(
    dataset_dir: str | os.PathLike,
    num_train: int = 32,
    num_val: int = 8,
    num_test: int = 8,
    seed: int = 0,
    overwrite: bool = False,
) -> str:
    """Write a synthetic dataset in the ISIC layout (:mod:`monai_seg.data.isic`).

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
    folders = [os.path.join(dataset_dir, section) for section in SECTIONS]
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


register_demo("isic", generate, marker="train")
