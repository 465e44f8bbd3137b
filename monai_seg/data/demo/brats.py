"""Synthetic brain-tumour MRI demo data in the BraTS layout (:mod:`monai_seg.data.brats`): four
modalities of an ellipsoid brain with nested tumour regions."""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from monai_seg.utils import check_free

from ..brats import BRATS_LABEL_VALUES, BRATS_MODALITIES, brats_label_values
from .base import register_demo

__all__ = ["generate"]

_NIFTI_EXT = ".nii.gz"


# mean intensity of each tissue per modality (FLAIR, T1, T1ce, T2): brain, edema, enhancing, necrosis
_CONTRAST = np.array(
    [
        [0.45, 1.00, 0.75, 0.35],  # FLAIR: bright edema
        [0.70, 0.50, 0.55, 0.25],  # T1: dark tumour
        [0.55, 0.50, 1.30, 0.25],  # T1ce: bright enhancing rim
        [0.45, 0.95, 0.75, 1.10],  # T2: bright edema and necrosis
    ],
    dtype=np.float32,
)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise, normalised to zero mean and unit std."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-8)


def _make_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case: (4, H, W, D) images (FLAIR, T1, T1ce, T2) and an (H, W, D) label map in
    2019 values. The brain is an ellipsoid that leaves the first and last slices empty; the tumour
    is three nested irregular blobs in one hemisphere: edema around a core whose centre is necrotic
    and whose rim enhances."""
    size = np.array(shape, dtype=np.float32)[:, None, None, None]
    grid = np.stack(np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij"))
    centre = size / 2 - 0.5
    brain_radii = size * rng.uniform(0.37, 0.42, (3, 1, 1, 1)) * np.array([1.0, 1.05, 0.9])[:, None, None, None]
    brain = (((grid - centre) / brain_radii) ** 2).sum(0) <= 1

    side = rng.choice((-1, 1))  # left or right hemisphere
    offset = np.array([side * rng.uniform(0.1, 0.2), rng.uniform(-0.15, 0.15), rng.uniform(-0.08, 0.08)])
    tumour_centre = centre + offset[:, None, None, None] * size
    tumour_radii = size * np.array([0.15, 0.15, 0.17])[:, None, None, None] * rng.uniform(0.8, 1.2, (3, 1, 1, 1))
    distance = np.sqrt((((grid - tumour_centre) / tumour_radii) ** 2).sum(0))
    distance *= 1 + 0.18 * _smooth_field(rng, shape, 3.0)  # one irregular border for all three levels: nested
    label = np.zeros(shape, dtype=np.uint8)
    label[brain & (distance <= 1.0)] = 2  # edema
    label[brain & (distance <= 0.55)] = 4  # enhancing rim of the core
    label[brain & (distance <= 0.3)] = 1  # necrotic centre

    tissue = np.select([label == 2, label == 4, label == 1], [1, 2, 3], default=0)
    texture = 0.08 * _smooth_field(rng, shape, 1.5)
    bias = 1 + 0.1 * _smooth_field(rng, shape, 12.0)
    images = np.zeros((4, *shape), dtype=np.float32)
    for channel, contrast in enumerate(_CONTRAST):
        signal = (contrast[tissue] + texture) * bias + 0.04 * rng.standard_normal(shape, dtype=np.float32)
        images[channel] = np.where(brain, np.clip(signal, 0.02, None) * rng.uniform(600, 900), 0)
    return images, label


def generate(
    dataset_dir: str | os.PathLike,
    num_cases: int = 6,
    shape: Sequence[int] = (96, 96, 32),
    seed: int = 0,
    label_convention: str = "2019",
    overwrite: bool = False,
) -> str:
    """Write a synthetic dataset in the BraTS layout (:mod:`monai_seg.data.brats`).

    Cases ``BraTS2021_00000``, ... hold int16 volumes of ``shape`` with a (-1, -1, 2) mm LPS-like
    affine (as BraTS volumes are stored, with a coarser slice spacing) and a uint8 label map;
    tumour-like nested blobs give all three regions. The data is learnable by a small ResU-Net
    in a few epochs.

    Args:
        dataset_dir: output folder, created if needed.
        num_cases: number of cases.
        shape: (H, W, D) of every volume.
        seed: random seed; the same arguments write identical files.
        label_convention: ``"2019"`` (enhancing 4) or ``"2023"`` (enhancing 3).
        overwrite: replace existing case folders.

    Returns:
        ``dataset_dir`` as a string.

    Raises:
        FileExistsError: when a case folder exists and ``overwrite`` is False.
    """
    values = brats_label_values(label_convention)
    dataset_dir = os.fspath(dataset_dir)
    shape = tuple(int(s) for s in shape)
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    affine[:3, 3] = (shape[0] - 1, shape[1] - 1, -shape[2])
    cases = [f"BraTS2021_{index:05d}" for index in range(num_cases)]
    check_free([os.path.join(dataset_dir, case) for case in cases], overwrite)
    rng = np.random.default_rng(seed)
    for case in cases:
        folder = os.path.join(dataset_dir, case)
        os.makedirs(folder)
        images, label = _make_case(rng, shape)
        label = np.asarray(values, dtype=np.uint8)[np.searchsorted(BRATS_LABEL_VALUES["2019"], label)]
        for modality, image in zip(BRATS_MODALITIES, images):
            volume = nib.Nifti1Image(np.round(image).astype(np.int16), affine)
            nib.save(volume, os.path.join(folder, f"{case}_{modality}{_NIFTI_EXT}"))
        nib.save(nib.Nifti1Image(label, affine), os.path.join(folder, f"{case}_seg{_NIFTI_EXT}"))
    return dataset_dir


register_demo("brats", generate, marker=None)
