"""Kaggle 2016 ultrasound nerve (brachial plexus) segmentation layout, split by subject.

Layout (``dataset_dir``)::

    train/{subject}_{img}.tif         uint8 grayscale, 580 wide x 420 high
    train/{subject}_{img}_mask.tif    uint8 0/255 nerve mask, empty in about half the images
    test/{img}.tif                    test images, numbered from 1
    train_masks.csv                   subject,img,pixels (Kaggle RLE of the training masks)

Datalists: ``train``: ``[{"image", "label", "subject", "img", "id"}]``, ``id`` being ``"{subject}_{img}"``
(``1_01.tif`` is image 1_1); ``test``: ``[{"image", "img"}]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tifffile

from .layouts import FileKind, Layout, Section, register_layout
from .validation import check_finite

__all__ = ["NERVE_LAYOUT", "check_nerve_item"]


def _read_tif(path: str, read_data: bool) -> tuple[tuple[int, ...], np.ndarray | None]:
    """Check that ``path`` is a complete single-page 2D grayscale TIF.

    Args:
        path: TIF file.
        read_data: also read the pixel array (otherwise only the header is parsed).

    Returns:
        The (H, W) shape and the array, or None when ``read_data`` is False.

    Raises:
        ValueError: naming the file when it cannot be parsed, is truncated, is not 2D grayscale, or
            holds NaN or infinite values (floating-point data is always read).
    """
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            data_end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
            if data_end > tif.filehandle.size:
                raise ValueError(f"truncated: pixel data ends at byte {data_end}, file size {tif.filehandle.size}")
            num_pages, shape, floating = len(tif.pages), page.shape, np.dtype(page.dtype).kind == "f"
            array = page.asarray() if read_data or floating else None
    except Exception as err:
        raise ValueError(f"Cannot read TIF {path}: {err}") from err
    if num_pages != 1 or len(shape) != 2:
        raise ValueError(f"{path} is not a 2D grayscale image: {num_pages} page(s) of shape {shape}.")
    if floating:
        check_finite(path, array)
    return shape, array


def _check_mask_values(path: str, mask: np.ndarray) -> None:
    """ValueError naming ``path`` unless the mask values are within {0, 255} or within {0, 1}."""
    top = mask.max()
    if top not in (0, 1, 255) or not np.all((mask == 0) | (mask == top)):
        values = np.unique(mask).tolist()
        raise ValueError(f"Mask {path} has values {values}, expected only 0 and 255 (or 0 and 1).")


def check_nerve_item(item: Mapping) -> None:
    """Check the files of a case: the image a complete, single-page, 2D grayscale TIF (only the header is
    read); the mask, when listed, the same, of the image's size, values within {0, 255} or {0, 1}.

    Raises:
        ValueError: naming the file for an unreadable or truncated TIF, a non-2D or multi-channel image,
            NaN or infinite values, an image/mask size mismatch, or mask values outside {0, 255} / {0, 1}.
    """
    image_shape, _ = _read_tif(item["image"], read_data=False)
    if "label" not in item:
        return
    mask_shape, mask = _read_tif(item["label"], read_data=True)
    if mask_shape != image_shape:
        raise ValueError(
            f"Mask {item['label']} is {mask_shape[0]}x{mask_shape[1]} (HxW) but its image "
            f"{item['image']} is {image_shape[0]}x{image_shape[1]}."
        )
    _check_mask_values(item["label"], mask)


NERVE_LAYOUT = register_layout(
    Layout(
        name="nerve",
        title="Kaggle nerve",
        sections={
            "train": Section(
                files=(
                    FileKind("image", r"(?P<subject>\d+)_(?P<img>\d+)\.tif", "{subject}_{img}.tif"),
                    FileKind("label", r"(?P<subject>\d+)_(?P<img>\d+)_mask\.tif", "{subject}_{img}_mask.tif",
                             label=True),
                ),
                id="{subject}_{img}",
                fields=("subject", "img"),
            ),
            "test": Section(files=(FileKind("image", r"(?P<img>\d+)\.tif", "{img}.tif"),), id="{img}", id_key=None,
                            fields=("img",)),
        },
        check=check_nerve_item,
        group="subject",
        suffixes=None,
    )
)
"""The Kaggle nerve layout: subject-wise splits of ``train/``."""
