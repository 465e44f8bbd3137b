"""Metrics inside a field of view (FOV), e.g. the circular fundus region of the DRIVE images.

Retinal-vessel results are reported over the FOV pixels only: the black border around the fundus
would otherwise count as true negatives and inflate accuracy, specificity and AUC, and predictions
there would count as false positives. Rather than new metrics, :func:`from_engine_fov` is an
output transform that keeps the FOV pixels of each image, so that MONAI's metric handlers and
:mod:`monai_seg.metrics.segmentation` compute inside the FOV unchanged. ``SupervisedEvaluator``'s
output holds only ``image``, ``label`` and ``pred``, so the evaluator's postprocessing copies the
batch's FOV into it first (``CopyItemsd(keys="fov", names="fov_mask")``)::

    # per image (rows of the report, mean Dice)
    SegmentationReport(output_dir, output_transform=from_engine_fov(["pred", "label"]))
    MeanDice(output_transform=from_engine_fov(["pred", "label"]))
    # pooled over every FOV pixel of the dataset, as the R2U-Net paper reports DRIVE
    ConfusionMatrix(metric_name="sensitivity", output_transform=from_engine_fov(["pred", "label"]))
    ROCAUC(output_transform=from_engine_fov(["prob", "label"], concat=True))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.utils import convert_to_tensor, ensure_tuple

__all__ = ["select_fov", "from_engine_fov"]


def select_fov(x: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
    """The pixels of a channel-first image inside a field of view.

    Args:
        x: image, shape (C, *spatial).
        fov: field of view, shape (1, *spatial) or (*spatial), nonzero inside.

    Returns:
        a plain tensor of shape (C, N), N being the number of FOV pixels, in raster order: a
        channel-first "image" with one spatial dimension that MONAI's metrics accept.

    Raises:
        ValueError: when the spatial shapes differ.
    """
    x, fov = convert_to_tensor(x, track_meta=False), convert_to_tensor(fov, track_meta=False)
    spatial = x.shape[1:]
    if fov.shape not in (spatial, (1, *spatial)):
        raise ValueError(f"field of view of shape {tuple(fov.shape)} does not match image shape {tuple(x.shape)}.")
    return x[:, (fov != 0).reshape(spatial).to(x.device)]


def from_engine_fov(keys: KeysCollection, fov_key: str = "fov_mask", concat: bool = False) -> Callable:
    """An ``output_transform`` (as MONAI's ``from_engine``) that keeps the pixels inside the field of view.

    Args:
        keys: keys of the channel-first tensors to extract from each decollated item, e.g.
            ``["pred", "label"]``.
        fov_key: key of the field-of-view mask of each item, shape (1, *spatial).
        concat: False gives, per key, a list with one (C, N_i) tensor per image (per-image metrics);
            True gives, per key, one (sum N_i, C) tensor in which every FOV pixel of the batch is a
            sample (pooled metrics such as ``ROCAUC``).

    Returns:
        a callable mapping ``engine.state.output`` (a list of dicts) to a tuple with one entry per
        key, or the entry itself for a single key.
    """
    _keys = ensure_tuple(keys)

    def _wrapper(data: Sequence[Mapping]) -> tuple | list | torch.Tensor:
        selected = [[select_fov(item[key], item[fov_key]) for item in data] for key in _keys]
        if concat:
            selected = [torch.cat(images, dim=1).T for images in selected]
        return tuple(selected) if len(selected) > 1 else selected[0]

    return _wrapper
