"""The Kaggle submission of the nerve bundle's inference: one RLE row per predicted mask."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from monai.handlers import from_engine
from monai.utils import ImageMetaKey, min_version, optional_import

from monai_seg.data.rle import rle_encode, write_submission

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["SubmissionWriter", "image_id_from_meta"]


def image_id_from_meta(item: Any) -> int:
    """Kaggle image id of a decollated prediction: the stem of its source file (``test/17.tif`` -> 17).

    Raises:
        ValueError: when the prediction has no source file name or the stem is not an integer.
    """
    filename = str(getattr(item, "meta", {}).get(ImageMetaKey.FILENAME_OR_OBJ, ""))
    stem = os.path.splitext(os.path.basename(filename))[0]
    if not stem.isdigit():
        raise ValueError(f"cannot read a Kaggle image id from file name {filename!r}: expected '<number>.tif'.")
    return int(stem)


class SubmissionWriter:
    """Write a Kaggle submission (``img,pixels``, RLE) of every predicted mask when the run completes.

    Attach it to the inference evaluator after a postprocessing that leaves one binary mask per image
    in MONAI's (W, H) orientation (``PILReader``'s default), shape (1, W, H) or (W, H). The file is
    written atomically and sorted by image id. Under ``torchrun`` each rank encodes its share of the
    images and rank 0 writes the rows of all ranks.

    Args:
        filename: path of the CSV file.
        output_transform: extracts the list of decollated masks from ``engine.state.output``.
        id_transform: maps one mask (a MetaTensor) to its image id.
    """

    def __init__(
        self,
        filename: str,
        output_transform: Callable = from_engine("pred"),
        id_transform: Callable[[Any], int] = image_id_from_meta,
    ) -> None:
        self.filename = filename
        self.output_transform = output_transform
        self.id_transform = id_transform
        self.rows: dict[int, str] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, _engine: Engine | None = None) -> None:
        self.rows = {}

    def __call__(self, engine: Engine) -> None:
        for mask in self.output_transform(engine.state.output):
            array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            if array.ndim == 3:
                array = array[0]
            # MONAI's (W, H) array transposed back to the TIF's (H, W) layout that Kaggle's RLE indexes
            self.rows[self.id_transform(mask)] = rle_encode(array.T > 0)

    def write(self, _engine: Engine | None = None) -> None:
        rows = self.rows
        if idist.get_world_size() > 1:  # each rank encoded its share of the images: rank 0 writes them all
            rows = {image: pixels for part in idist.all_gather(self.rows) for image, pixels in part.items()}
            if idist.get_rank() > 0:
                return
        os.makedirs(os.path.dirname(os.path.abspath(self.filename)), exist_ok=True)
        write_submission(rows, self.filename)
