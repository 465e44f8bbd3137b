"""Synthetic demo datasets, one generator per layout, written in the layout of the real data.

:func:`make_demo` writes the demo dataset of a layout, :func:`ensure_demo` writes it once (atomically,
for bundle configs); each module registers its generator with its layout (:func:`register_demo`).
"""

from . import brats, drive, isic, nerve, patients, xray
from .base import ensure_demo, has_demo, make_demo, register_demo, smooth_noise
from .nerve import NERVE_DEMO_STYLES, make_nerve_test_images
