"""DRIVE retinal-vessel segmentation layout, split by image (each image is another subject).

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

from functools import partial

from .folders import BINARY_MASK_VALUES, check_image_pair
from .layouts import FileKind, Layout, Section, register_layout

__all__ = ["DRIVE_IMAGE_SHAPE", "DRIVE_LAYOUT"]

DRIVE_IMAGE_SHAPE = (584, 565)
"""(H, W) of the DRIVE images."""

_FILES = Section(
    files=(
        FileKind("image", r"(?P<id>\d+)_{section}\.tiff?", "{id}_{section}.tif", folder="images"),
        FileKind("label", r"(?P<id>\d+)_manual1\.gif", "{id}_manual1.gif", folder="1st_manual", label=True),
        FileKind("fov", r"(?P<id>\d+)_{section}_mask\.gif", "{id}_{section}_mask.gif", folder="mask"),
    )
)

DRIVE_LAYOUT = register_layout(
    Layout(
        name="drive",
        title="DRIVE",
        sections={"training": _FILES, "test": _FILES},
        check=partial(check_image_pair, image_modes=("RGB",),
                      mask_values={"label": BINARY_MASK_VALUES, "fov": BINARY_MASK_VALUES}, convert="L"),
        group="id",
    )
)
"""The DRIVE layout: RGB images; vessel and FOV masks of the image's size, 0/255 (or 0/1) once converted to gray."""
