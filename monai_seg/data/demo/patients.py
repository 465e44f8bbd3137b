"""Synthetic demo data in the patient PNG layout (:mod:`monai_seg.data.patients`): bright blobs on a textured
background, the blob's position and size fixed per patient."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from monai_seg.utils import check_free

from .base import register_demo, smooth_noise

__all__ = ["generate"]


def generate(
    dataset_dir: str | os.PathLike,
    num_patients: int = 8,
    images_per_patient: int = 4,
    num_test: int = 4,
    size: tuple[int, int] = (64, 64),
    seed: int = 0,
    overwrite: bool = False,
) -> str:
    """Write a synthetic dataset in the patient PNG layout: ``train/P{patient:03d}_{img:04d}.png`` and its mask
    for patients 1..num_patients, ``test/`` images of the next patients (with masks).

    Args:
        dataset_dir: output folder, created if needed.
        num_patients: training patients.
        images_per_patient: images per patient.
        num_test: test images, one patient each.
        size: (H, W) of the images.
        seed: random seed; the same arguments write identical files.
        overwrite: replace existing ``train/`` and ``test/``.

    Returns:
        ``dataset_dir`` as a string.

    Raises:
        FileExistsError: when an output folder exists and ``overwrite`` is False.
    """
    dataset_dir = os.fspath(dataset_dir)
    check_free([os.path.join(dataset_dir, section) for section in ("train", "test")], overwrite)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: size[0], : size[1]]
    patients = {"train": [(p, images_per_patient) for p in range(1, num_patients + 1)],
                "test": [(num_patients + 1 + p, 1) for p in range(num_test)]}
    for section, cases in patients.items():
        os.makedirs(os.path.join(dataset_dir, section))
        for patient, count in cases:
            centre, radius = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.1, 0.25) * min(size)
            for img in range(1, count + 1):
                distance = np.hypot(y - centre[0] - rng.normal(0, 2), x - centre[1] - rng.normal(0, 2))
                mask = distance <= radius * rng.uniform(0.9, 1.1)
                image = 90 + 20 * smooth_noise(rng, size, 3) + 80 * mask + rng.normal(0, 8, size)
                name = os.path.join(dataset_dir, section, f"P{patient:03d}_{img:04d}")
                Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(f"{name}.png")
                Image.fromarray(mask.astype(np.uint8) * 255).save(f"{name}_mask.png")
    return dataset_dir


register_demo("patients", generate, marker="train")
