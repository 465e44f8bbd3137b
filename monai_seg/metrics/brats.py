"""Per-case evaluation of Monte-Carlo dropout segmentations of 3D volumes (the BraTS bundle): region
metrics and uncertainty quality (the CSV / JSON report is written by :class:`monai_seg.handlers.BraTSReport`,
the figure per case by :class:`monai_seg.handlers.UncertaintyFigures`).

Per case and region (binary channel, e.g. WT, or TC / WT / ET):

- ``dice``, ``sensitivity``, ``specificity``: from MONAI's confusion matrix with this package's
  empty-safe convention (:func:`~monai_seg.metrics.segmentation_metrics_from_confusion_matrix`);
- ``hd95``: MONAI's 95th-percentile Hausdorff distance in mm (voxel spacing from the affine);
  0 when prediction and ground truth are both empty, NaN when only one is;
- ``uncertainty_auroc``: AUROC of the uncertainty map as a detector of the voxel errors
  (:func:`~monai_seg.metrics.compute_uncertainty_error_auroc`), inside the brain;
- ``ece``: expected calibration error of the mean probability (MONAI's ``CalibrationErrorMetric``),
  inside the brain.

The brain is where any input channel is non-zero (skull-stripped MRI), so that the easy background
does not inflate the uncertainty metrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.metrics import CalibrationErrorMetric, compute_hausdorff_distance, get_confusion_matrix

from monai_seg.metrics.segmentation import segmentation_metrics_from_confusion_matrix
from monai_seg.metrics.uncertainty import compute_uncertainty_error_auroc

__all__ = ["VOLUME_METRICS", "compute_volume_metrics"]

VOLUME_METRICS: tuple[str, ...] = ("dice", "hd95", "sensitivity", "specificity", "uncertainty_auroc", "ece")
"""Per-region columns of :class:`monai_seg.handlers.BraTSReport`, in order."""


def _array(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A plain CPU tensor (drops MetaTensor metadata)."""
    x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return x.detach().cpu()


def compute_volume_metrics(
    prob: torch.Tensor,
    uncertainty: torch.Tensor,
    label: torch.Tensor,
    brain: torch.Tensor,
    spacing: Sequence[float] | None = None,
    threshold: float = 0.5,
    num_bins: int = 10,
) -> dict[str, torch.Tensor]:
    """Region and uncertainty metrics of one volume (see the module docstring).

    Args:
        prob: (C, *spatial) mean probability per region.
        uncertainty: (C, *spatial) uncertainty per region (e.g. the entropy or std map).
        label: (C, *spatial) binary ground truth.
        brain: (*spatial) bool mask of the voxels scored by ``uncertainty_auroc`` and ``ece``.
        spacing: voxel size in mm per spatial axis for ``hd95``; None for 1 mm.
        threshold: probability threshold of the prediction.
        num_bins: probability bins of the calibration error.

    Returns:
        one (C,) float tensor per name of :data:`VOLUME_METRICS`.
    """
    prob, uncertainty, label = _array(prob).float(), _array(uncertainty).float(), _array(label) > 0.5
    pred = prob > threshold
    confusion = get_confusion_matrix(pred[None].float(), label[None].float())
    names = ("dice", "sensitivity", "specificity")
    metrics = {k: v[0] for k, v in segmentation_metrics_from_confusion_matrix(confusion, names).items()}
    with warnings.catch_warnings():  # MONAI warns about empty masks; they are handled below
        warnings.filterwarnings("ignore", message=".* is all 0, this may result in nan/inf distance")
        hd95 = compute_hausdorff_distance(
            pred[None], label[None], include_background=True, percentile=95, spacing=spacing
        )
    both_empty = ~pred.flatten(1).any(1) & ~label.flatten(1).any(1)
    metrics["hd95"] = torch.where(both_empty, 0.0, hd95[0].float())

    inside = _array(brain).bool().flatten()
    inside = inside if inside.any() else torch.ones_like(inside)

    def scored(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, inside][None]  # (1, C, voxels in the brain)

    p, u, y = scored(prob), scored(uncertainty), scored(label)
    metrics["uncertainty_auroc"] = compute_uncertainty_error_auroc(u, (p > threshold) != y)[0]
    calibration = CalibrationErrorMetric(num_bins=num_bins, metric_reduction="none")
    metrics["ece"] = calibration(y_pred=p, y=y.float())[0].float()
    return {name: metrics[name].float() for name in VOLUME_METRICS}
