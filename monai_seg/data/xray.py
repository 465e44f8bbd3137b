"""Multi-class X-ray segmentation in a generic image/mask folder layout, with official sections.

Layout (``dataset_dir``)::

    train/images/<name>.png    grayscale radiograph, 8- or 16-bit PNG or TIFF (.tif, .tiff)
    train/masks/<name>.png     integer class map of the same size, values 0..num_classes-1
                               (PNG or TIFF, any file name suffix; palette PNGs hold class indices)
    val/...                    the same for the validation images
    test/images/...            test images; ``test/masks/`` is optional (inference)

16-bit images keep their full range through MONAI's ``PILReader`` (PIL mode ``I;16``, read as
float32); the bundle maps them to [0, 1] with a fixed window (``ScaleIntensityRanged``).
"""

from __future__ import annotations

from collections.abc import Mapping

from .folders import check_image_pair
from .layouts import FileKind, Layout, Section, register_layout

__all__ = ["XRAY_CLASSES", "XRAY_LAYOUT", "check_xray_item"]

XRAY_CLASSES = ("background", "soft tissue", "bone")
"""Classes of the demo dataset, by label value."""

GRAY_MODES = ("L", "I;16", "I;16L", "I;16B", "I")
"""PIL modes of 8-bit, 16-bit and 32-bit integer grayscale."""


def check_xray_item(item: Mapping, num_classes: int = 3) -> None:
    """Check a case: a grayscale image (8- or 16-bit); its mask of the image's size with values in
    ``0..num_classes-1`` (see :func:`monai_seg.data.folders.check_image_pair`)."""
    check_image_pair(item, GRAY_MODES, {"label": [range(num_classes)]})


_FILES = Section(
    files=(
        FileKind("image", r"(?P<id>.+)\.(?:png|tiff?)", "{id}.png", folder="images"),
        FileKind("label", r"(?P<id>.+)\.(?:png|tiff?)", "{id}.png", folder="masks", label=True),
    )
)

XRAY_LAYOUT = register_layout(
    Layout(
        name="xray",
        title="X-ray",
        sections={"train": _FILES, "val": _FILES, "test": _FILES},
        check=check_xray_item,
        options={"num_classes": 3},
    )
)
"""The X-ray layout: official ``train``/``val`` sections; option ``num_classes`` (background included)."""
