"""ISIC 2017/2018 skin-lesion segmentation layout, with the official splits as sections.

Layout (``dataset_dir``), one folder per official ISIC split::

    train/ISIC_0000000.jpg                 RGB dermoscopy image, sizes vary
    train/ISIC_0000000_segmentation.png    0/255 lesion mask of the same size
    val/...                                the same for the validation images
    test/...                               the same; masks are optional (inference)

ISIC's own download folders work as they are: with the images in ``/data/train`` (a link to
``ISIC-2017_Training_Data``), ``load_datalist("isic", "/data", "train", folders={"label":
"/data/ISIC-2017_Training_Part1_GroundTruth"})`` pairs them with the masks of the other folder;
superpixel maps and non-image files (the metadata CSV) are ignored.
"""

from __future__ import annotations

from functools import partial

from .folders import BINARY_MASK_VALUES, check_image_pair
from .layouts import FileKind, Layout, Section, register_layout

__all__ = ["ISIC_LAYOUT"]

_FILES = Section(
    files=(
        FileKind("image", r"(?P<id>ISIC_\d+)\.(?:jpg|jpeg|png)", "{id}.jpg"),
        FileKind("label", r"(?P<id>ISIC_\d+)_segmentation\.png", "{id}_segmentation.png", label=True),
    )
)

ISIC_LAYOUT = register_layout(
    Layout(
        name="isic",
        title="ISIC",
        sections={"train": _FILES, "val": _FILES, "test": _FILES},
        check=partial(check_image_pair, image_modes=("RGB",), mask_values={"label": BINARY_MASK_VALUES}),
        ignore=r"ISIC_\d+_superpixels\.png",
    )
)
"""The ISIC layout: RGB images, masks 0/255 (or 0/1) of the image's size; official ``train``/``val`` sections."""
