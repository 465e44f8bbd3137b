"""Per-case evaluation of Monte-Carlo dropout segmentations of 3D volumes (the BraTS bundle): region
metrics, uncertainty quality and a CSV / JSON report (the figure per case is
:class:`monai_seg.visualize.UncertaintyFigures`).

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

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.metrics import CalibrationErrorMetric, compute_hausdorff_distance, get_confusion_matrix
from monai.utils import ImageMetaKey, evenly_divisible_all_gather, string_list_all_gather

from monai_seg.data.brats import brats_case_name
from monai_seg.metrics.segmentation import ReportHandler, segmentation_metrics_from_confusion_matrix
from monai_seg.metrics.uncertainty import compute_uncertainty_error_auroc
from monai_seg.utils import atomic_write_csv, atomic_write_text

__all__ = ["VOLUME_METRICS", "compute_volume_metrics", "BraTSReport", "item_case_name"]

VOLUME_METRICS: tuple[str, ...] = ("dice", "hd95", "sensitivity", "specificity", "uncertainty_auroc", "ece")
"""Per-region columns of :class:`BraTSReport`, in order."""


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


def item_case_name(item: Mapping, image_key: str) -> str:
    """The case of a decollated output item, from its image's ``filename_or_obj``; "" without one."""
    meta = getattr(item[image_key], "meta", {})
    return brats_case_name(meta[ImageMetaKey.FILENAME_OR_OBJ]) if ImageMetaKey.FILENAME_OR_OBJ in meta else ""


def _spacing(x: torch.Tensor) -> list[float] | None:
    """Voxel size in mm from a MetaTensor's affine; None for a plain tensor."""
    if not isinstance(x, MetaTensor):
        return None
    return affine_to_spacing(x.affine, r=x.dim() - 1).tolist()


class BraTSReport(ReportHandler):
    """
    Ignite handler that scores each case of an evaluator run (:func:`compute_volume_metrics`) and,
    at the end of the run, writes a per-case CSV and a summary JSON (both atomically).

    The CSV has one row per case: ``case`` and ``<metric>_<region>`` for every metric of
    :data:`VOLUME_METRICS` and region. The JSON holds the mean of each column over the cases
    (ignoring NaN), the number of cases, the threshold and the name of the uncertainty map. In
    multi-GPU evaluation the rows are gathered and rank ``save_rank`` writes the files.

    It reads the decollated ``engine.state.output`` items after ``postprocessing``: all maps must
    be on the label's grid (``Invertd`` them first).

    Args:
        output_dir: folder of the report files.
        regions: names of the label / probability channels, e.g. ``("WT",)`` or ``("TC", "WT", "ET")``.
        prob_key: key of the mean probability (C, *spatial).
        uncertainty_key: key of the uncertainty map (C, *spatial).
        label_key: key of the binary ground truth (C, *spatial).
        image_key: key of the input image; its non-zero voxels are the brain, its file names the case.
        threshold: probability threshold of the prediction.
        num_bins: probability bins of the calibration error.
        per_case_filename: name of the CSV file.
        summary_filename: name of the JSON file.
        save_rank: rank that writes the files in multi-GPU evaluation.
        name: logger name, defaults to ``engine.logger``.
    """

    def __init__(
        self,
        output_dir: str,
        regions: Sequence[str] = ("WT",),
        prob_key: str = "pred_prob",
        uncertainty_key: str = "pred_entropy",
        label_key: str = "label",
        image_key: str = "image",
        threshold: float = 0.5,
        num_bins: int = 10,
        per_case_filename: str = "metrics_per_case.csv",
        summary_filename: str = "metrics_summary.json",
        save_rank: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(output_dir, save_rank, name)
        self.regions = tuple(regions)
        self.prob_key = prob_key
        self.uncertainty_key = uncertainty_key
        self.label_key = label_key
        self.image_key = image_key
        self.threshold = threshold
        self.num_bins = num_bins
        self.per_case_filename = per_case_filename
        self.summary_filename = summary_filename
        self._cases: list[str] = []
        self._rows: list[torch.Tensor] = []

    @property
    def columns(self) -> list[str]:
        """The metric columns of the CSV, ``<metric>_<region>``."""
        return [f"{metric}_{region}" for metric in VOLUME_METRICS for region in self.regions]

    def _started(self, _engine: Engine) -> None:
        self._cases, self._rows = [], []

    def __call__(self, engine: Engine) -> None:
        """
        Score the cases of the current iteration.

        Args:
            engine: Ignite Engine, usually an evaluator.
        """
        for item in engine.state.output:
            label = item[self.label_key]
            if label.shape[0] != len(self.regions):
                raise ValueError(f"label has {label.shape[0]} channels but regions are {self.regions}.")
            metrics = compute_volume_metrics(
                item[self.prob_key],
                item[self.uncertainty_key],
                label,
                (_array(item[self.image_key]) != 0).any(0),
                spacing=_spacing(label),
                threshold=self.threshold,
                num_bins=self.num_bins,
            )
            self._cases.append(item_case_name(item, self.image_key) or str(len(self._cases)))
            self._rows.append(torch.cat([metrics[name] for name in VOLUME_METRICS]))

    def _finalize(self, _engine: Engine) -> None:
        """Gather the rows from all ranks and write the report on ``save_rank``."""
        is_writer = self._is_writer()
        rows = torch.stack(self._rows) if self._rows else torch.zeros(0, len(self.columns))
        cases = self._cases
        if idist.get_world_size() > 1:
            rows, cases = evenly_divisible_all_gather(rows, concat=True), string_list_all_gather(cases)
        if not is_writer:
            return
        summary: dict[str, Any] = {
            column: None if torch.isnan(values).all() else values.nanmean().item()
            for column, values in zip(self.columns, rows.T)
        }
        summary.update(num_cases=len(cases), threshold=self.threshold, uncertainty=self.uncertainty_key)
        os.makedirs(self.output_dir, exist_ok=True)
        atomic_write_csv(os.path.join(self.output_dir, self.per_case_filename), ["case", *self.columns],
                         ([case, *values] for case, values in zip(cases, rows.tolist())))
        atomic_write_text(os.path.join(self.output_dir, self.summary_filename), json.dumps(summary, indent=2) + "\n")
        self.logger.info(f"BraTS report of {len(cases)} cases written to {self.output_dir}: {summary}")
