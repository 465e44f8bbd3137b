"""Registry of the demo-data generators (one per layout) and their atomic staging."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..layouts import get_layout

__all__ = ["register_demo", "has_demo", "make_demo", "ensure_demo", "smooth_noise"]


class _Demo(NamedTuple):
    generate: Callable[..., str]
    marker: str | None


_DEMOS: dict[str, _Demo] = {}


def register_demo(layout: str, generate: Callable[..., str], marker: str | None) -> None:
    """Register the demo generator of a registered layout.

    Args:
        layout: the layout name.
        generate: ``generate(dataset_dir, seed=0, overwrite=False, **kwargs)`` writes a dataset in the layout and
            returns ``dataset_dir`` as a string; the same arguments write identical files.
        marker: top-level entry whose presence marks a complete dataset (``"train"``); None: any visible entry.
    """
    _DEMOS[get_layout(layout).name] = _Demo(generate, marker)


def has_demo(layout: str) -> bool:
    """Whether ``layout`` has a demo generator."""
    return get_layout(layout).name in _DEMOS


def make_demo(layout: str, dataset_dir: str | os.PathLike, **kwargs) -> str:
    """Write the demo dataset of ``layout`` into ``dataset_dir``.

    Args:
        layout: a layout with a demo generator (:func:`has_demo`).
        dataset_dir: output folder, created if needed.
        kwargs: the generator's arguments, e.g. ``seed``, ``overwrite`` and the dataset's size.

    Returns:
        ``dataset_dir`` as a string.

    Raises:
        ValueError: for an unknown layout or one without demo data.
        FileExistsError: when an output exists and ``overwrite`` is not True.
    """
    if not has_demo(layout):
        raise ValueError(f"The {layout} layout has no demo data; the layouts with demo data are {sorted(_DEMOS)}.")
    return _DEMOS[get_layout(layout).name].generate(dataset_dir, **kwargs)


def _is_complete(dataset_dir: str, marker: str | None) -> bool:
    if marker is not None:
        return os.path.exists(os.path.join(dataset_dir, marker))
    return os.path.isdir(dataset_dir) and any(not name.startswith(".") for name in os.listdir(dataset_dir))


def ensure_demo(layout: str, dataset_dir: str | os.PathLike, **kwargs) -> str:
    """Write the demo dataset of ``layout`` (:func:`make_demo`) unless ``dataset_dir`` holds a dataset.

    For bundle configs: ``"$monai_seg.data.ensure_demo(@layout, @dataset_dir)"``; for a layout without demo
    data, ``dataset_dir`` is returned as it is (the reader then names a missing folder). The data is
    written to a hidden temporary folder beside ``dataset_dir`` and renamed into place, or, when
    ``dataset_dir`` holds other entries, its top-level entries are moved in, the layout's marker last,
    so that concurrent calls (one per distributed rank) never see a partial dataset. Existing entries are kept.

    Args:
        layout: a registered layout.
        dataset_dir: dataset folder, created if needed.
        kwargs: arguments of the layout's demo generator.

    Returns:
        ``dataset_dir`` as a string.
    """
    dataset_dir = os.fspath(dataset_dir)
    demo = _DEMOS.get(get_layout(layout).name)
    if demo is None or _is_complete(dataset_dir, demo.marker):
        return dataset_dir
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".demo_", dir=parent)
    try:
        demo.generate(staging, **kwargs)
        try:
            os.replace(staging, dataset_dir)  # atomic; replaces a missing or empty folder
        except OSError:
            _move_entries(staging, dataset_dir, demo.marker)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return dataset_dir


def _move_entries(staging: str, dataset_dir: str, marker: str | None) -> None:
    """Move the top-level entries of ``staging`` into ``dataset_dir``, ``marker`` last, keeping existing ones."""
    for name in sorted(os.listdir(staging), key=lambda name: name == marker):
        target = os.path.join(dataset_dir, name)
        try:
            os.rename(os.path.join(staging, name), target)
        except OSError:
            if not os.path.exists(target):  # otherwise another process moved it in first
                raise


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation, float32 (demo textures).

    Args:
        rng: random generator.
        shape: array shape.
        sigma: smoothing scale in pixels (the texture's grain size).
    """
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-6)
