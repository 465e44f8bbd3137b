"""The Kaggle submission of the nerve bundle's inference: one RLE row per predicted mask, and optionally a side
report of the presence head's Monte-Carlo mean, std and referral per image."""

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
from monai_seg.utils import atomic_write_csv

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

    With ``referral_filename``, a side report ``img,presence,presence_std,referred`` lists every image, sorted
    by id, with the presence head's Monte-Carlo mean and std and whether it is referred to a human (as
    ``PresenceGatingd(std_key=...)`` stores them): the referred images are those with ``referred`` 1, whose
    submitted mask a reader should check.

    Args:
        filename: path of the CSV file.
        output_transform: extracts the list of decollated masks from ``engine.state.output``.
        id_transform: maps one mask (a MetaTensor) to its image id.
        referral_filename: path of the side report, or None for none.
        referral_transform: extracts ``(presence, presence_std, referred)`` from ``engine.state.output``,
            lists with one value (or one-element tensor) per image.
    """

    def __init__(
        self,
        filename: str,
        output_transform: Callable = from_engine("pred"),
        id_transform: Callable[[Any], int] = image_id_from_meta,
        referral_filename: str | None = None,
        referral_transform: Callable = from_engine(["presence", "presence_std", "presence_referred"]),
    ) -> None:
        self.filename = filename
        self.output_transform = output_transform
        self.id_transform = id_transform
        self.referral_filename = referral_filename
        self.referral_transform = referral_transform
        self.rows: dict[int, str] = {}
        self.referrals: dict[int, tuple[float, float, int]] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, _engine: Engine | None = None) -> None:
        self.rows = {}
        self.referrals = {}

    def __call__(self, engine: Engine) -> None:
        masks = self.output_transform(engine.state.output)
        for mask in masks:
            array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            if array.ndim == 3:
                array = array[0]
            # MONAI's (W, H) array transposed back to the TIF's (H, W) layout that Kaggle's RLE indexes
            self.rows[self.id_transform(mask)] = rle_encode(array.T > 0)
        if self.referral_filename is not None:
            for mask, presence, std, referred in zip(masks, *self.referral_transform(engine.state.output)):
                self.referrals[self.id_transform(mask)] = (float(presence), float(std), int(float(referred)))

    def write(self, _engine: Engine | None = None) -> None:
        rows, referrals = self.rows, self.referrals
        if idist.get_world_size() > 1:  # each rank encoded its share of the images: rank 0 writes them all
            rows = {image: pixels for part in idist.all_gather(self.rows) for image, pixels in part.items()}
            referrals = {image: row for part in idist.all_gather(self.referrals) for image, row in part.items()}
            if idist.get_rank() > 0:
                return
        os.makedirs(os.path.dirname(os.path.abspath(self.filename)), exist_ok=True)
        write_submission(rows, self.filename)
        if self.referral_filename is not None:
            os.makedirs(os.path.dirname(os.path.abspath(self.referral_filename)), exist_ok=True)
            atomic_write_csv(self.referral_filename, ["img", "presence", "presence_std", "referred"],
                             ((image, *row) for image, row in sorted(referrals.items())))
