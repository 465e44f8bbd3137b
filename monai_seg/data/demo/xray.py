"""Synthetic 16-bit radiograph demo data in the X-ray layout (:mod:`monai_seg.data.xray`): limbs with
soft tissue and long bones, three classes."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from scipy import ndimage

from monai_seg.utils import check_free

from .base import register_demo, smooth_noise

__all__ = ["generate"]

SECTIONS = ("train", "val", "test")



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


def generate(
    dataset_dir: str | os.PathLike,
    num_train: int = 40,
    num_val: int = 10,
    num_test: int = 6,
    size: tuple[int, int] = (320, 256),
    image_format: str = "png",
    seed: int = 0,
    overwrite: bool = False,
) -> str:
    """Write a synthetic 3-class dataset (:data:`XRAY_CLASSES`) in the X-ray layout (:mod:`monai_seg.data.xray`).

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
    check_free([os.path.join(dataset_dir, section) for section in SECTIONS], overwrite)
    rng = np.random.default_rng(seed)
    for section, count in zip(SECTIONS, (num_train, num_val, num_test)):
        image_dir, mask_dir = (os.path.join(dataset_dir, section, name) for name in ("images", "masks"))
        os.makedirs(image_dir)
        os.makedirs(mask_dir)
        for number in range(count):
            image, labels = _render_xray(rng, size)
            Image.fromarray(image).save(os.path.join(image_dir, f"{section}_{number:03d}.{image_format}"))
            Image.fromarray(labels).save(os.path.join(mask_dir, f"{section}_{number:03d}.png"))
    return dataset_dir


register_demo("xray", generate, marker="train")
