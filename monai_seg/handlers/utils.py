"""Helpers the handlers share."""

from __future__ import annotations

from collections.abc import Mapping

from monai.utils import ImageMetaKey

from monai_seg.data.brats import brats_case_name

__all__ = ["item_case_name"]


def item_case_name(item: Mapping, image_key: str) -> str:
    """The case of a decollated output item, from its image's ``filename_or_obj``; "" without one."""
    meta = getattr(item[image_key], "meta", {})
    return brats_case_name(meta[ImageMetaKey.FILENAME_OR_OBJ]) if ImageMetaKey.FILENAME_OR_OBJ in meta else ""
