"""A folder of PNG images and masks named by patient: ``P012_0003.png`` / ``P012_0003_mask.png``, split by patient.

Layout (``dataset_dir``)::

    train/P012_0003.png         8-bit grayscale image 3 of patient 12
    train/P012_0003_mask.png    its 0/255 (or 0/1) mask
    test/P040_0001.png          images to segment (masks optional)
"""

from __future__ import annotations

from functools import partial

from .folders import BINARY_MASK_VALUES, check_image_pair
from .layouts import FileKind, Layout, Section, register_layout

__all__ = ["PATIENTS_LAYOUT"]

_FILES = Section(
    files=(
        FileKind("image", r"P(?P<patient>\d+)_(?P<img>\d+)\.png", "P{patient:03d}_{img:04d}.png"),
        FileKind("label", r"P(?P<patient>\d+)_(?P<img>\d+)_mask\.png", "P{patient:03d}_{img:04d}_mask.png", label=True),
    ),
    id="P{patient:03d}_{img:04d}",
    fields=("patient", "img"),
)

PATIENTS_LAYOUT = register_layout(
    Layout(
        name="patients",
        title="Patient PNG",
        sections={"train": _FILES, "test": _FILES},
        check=partial(check_image_pair, image_modes=("L",), mask_values={"label": BINARY_MASK_VALUES}),
        group="patient",
    )
)
"""PNG images and masks with a patient-id prefix: grayscale images, binary masks, split by patient."""
