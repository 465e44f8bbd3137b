"""Per-image binary segmentation metrics of the seed studies, and a per-image CSV / JSON report
(written at the end of each evaluator run by :class:`monai_seg.handlers.SegmentationReport`).

All segmentation metrics are computed from MONAI's per-image confusion matrix
(``monai.metrics.get_confusion_matrix``, shape (B, C, 4) = TP, FP, TN, FN) with
``monai.metrics.compute_confusion_matrix_metric``. MONAI returns NaN for a ratio whose denominator
is 0 (e.g. sensitivity of an image without foreground); here such a ratio scores **1 when the image
has no error (FP + FN = 0) and 0 otherwise**, so every per-image value is defined:

    ==========================  ====  ===  ===========  =========
    ground truth / prediction   Dice  IoU  sensitivity  precision
    ==========================  ====  ===  ===========  =========
    empty / empty               1     1    1            1
    empty / non-empty           0     0    0            0
    non-empty / empty           0     0    0            0
    ==========================  ====  ===  ===========  =========

This is the Kaggle nerve score: the mean over images of a per-image Dice that is 1 for an empty
mask predicted empty. Per image, F1 equals Dice by construction (both are 2TP / (2TP + FP + FN));
both names are kept because the studies report both. Accuracy is always defined; specificity is
undefined only when the mask fills the whole image, where the same convention applies.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import (
    CumulativeIterationMetric,
    compute_confusion_matrix_metric,
    compute_roc_auc,
    get_confusion_matrix,
)
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from monai_seg.data.rle import NERVE_IMAGE_SHAPE, read_submission, rle_decode
from monai_seg.utils import atomic_write_csv, atomic_write_text

__all__ = [
    "SEGMENTATION_METRICS",
    "empty_safe_confusion_matrix_metric",
    "segmentation_metrics_from_confusion_matrix",
    "compute_kaggle_dice",
    "compute_presence_metrics",
    "score_submission",
    "KaggleDiceMetric",
    "KaggleSkillMetric",
    "BinarySegmentationMetrics",
    "write_segmentation_report",
]

SEGMENTATION_METRICS: dict[str, str] = {
    "dice": "f1 score",
    "iou": "threat score",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "precision": "precision",
    "f1": "f1 score",
    "accuracy": "accuracy",
}
"""Report column name -> MONAI confusion-matrix metric name."""


def empty_safe_confusion_matrix_metric(metric_name: str, confusion_matrix: torch.Tensor) -> torch.Tensor:
    """
    MONAI's ``compute_confusion_matrix_metric`` with the NaN-free convention of this module: a ratio
    with a zero denominator is 1 where FP + FN = 0 (nothing wrong) and 0 elsewhere.

    Args:
        metric_name: any name accepted by ``monai.metrics.compute_confusion_matrix_metric``.
        confusion_matrix: shape (..., 4) with TP, FP, TN, FN in the last dimension.

    Returns:
        metric values of shape ``confusion_matrix.shape[:-1]``.
    """
    value = compute_confusion_matrix_metric(metric_name, confusion_matrix)
    error_free = (confusion_matrix[..., 1] + confusion_matrix[..., 3] == 0).to(value.dtype)
    return torch.where(torch.isnan(value), error_free, value)


def segmentation_metrics_from_confusion_matrix(
    confusion_matrix: torch.Tensor, metric_names: Sequence[str] = tuple(SEGMENTATION_METRICS)
) -> dict[str, torch.Tensor]:
    """
    Args:
        confusion_matrix: per-image confusion matrices, shape (B, C, 4).
        metric_names: keys of :py:data:`SEGMENTATION_METRICS`.

    Returns:
        one (B, C) tensor per metric name.
    """
    return {
        name: empty_safe_confusion_matrix_metric(SEGMENTATION_METRICS[name], confusion_matrix) for name in metric_names
    }


def compute_kaggle_dice(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """
    Per-image, per-channel Dice with the Kaggle convention (empty vs empty = 1, empty vs
    non-empty = 0).

    Args:
        y_pred: binarised prediction, shape (B, C, *spatial).
        y: binary ground truth, same shape.

    Returns:
        Dice of shape (B, C).
    """
    return empty_safe_confusion_matrix_metric("f1 score", get_confusion_matrix(y_pred, y))


def compute_presence_metrics(
    presence_prob: torch.Tensor, presence_true: torch.Tensor, threshold: float = 0.5
) -> dict[str, float | None]:
    """
    Image-level presence quality.

    Args:
        presence_prob: presence probabilities, shape (N,).
        presence_true: 1 where the ground-truth mask is non-empty, shape (N,).
        threshold: probabilities ``>= threshold`` are predicted present.

    Returns:
        ``presence_accuracy`` and ``presence_auroc`` (MONAI's ``compute_roc_auc``; None when the
        ground truth holds a single class, where the AUROC is undefined).
    """
    presence_true = presence_true.to(torch.float32)
    accuracy = ((presence_prob >= threshold).to(torch.float32) == presence_true).to(torch.float32).mean().item()
    auroc = float(compute_roc_auc(presence_prob.to(torch.float32), presence_true))
    return {"presence_accuracy": accuracy, "presence_auroc": None if math.isnan(auroc) else auroc}


def score_submission(
    submission: str | os.PathLike, answer_key: str | os.PathLike, shape: tuple[int, int] = NERVE_IMAGE_SHAPE
) -> dict[str, float | int]:
    """Score a Kaggle nerve submission against an answer key of the same format (``img,pixels``).

    The demo data's ``test_masks.csv`` is such a key (``monai_seg.data.make_demo("nerve", ...)``).

    Args:
        submission: the submission CSV.
        answer_key: the true masks, one row per test image.
        shape: (H, W) of the masks.

    Returns:
        ``kaggle_score`` (mean per-image Dice, 1 for an empty mask predicted empty), ``dice_nerve``
        (mean Dice over the images with a nerve; NaN without any), ``presence_accuracy`` (the
        fraction of images whose mask is non-empty exactly when the true one is), ``num_images``,
        ``num_nonempty`` (true masks with a nerve) and ``num_predicted`` (non-empty submitted masks).

    Raises:
        ValueError: when either file is malformed (see :func:`monai_seg.data.read_submission`) or
            their images differ.
    """
    predicted, truth = read_submission(submission, shape), read_submission(answer_key, shape)
    if sorted(predicted) != sorted(truth):
        missing, extra = sorted(set(truth) - set(predicted)), sorted(set(predicted) - set(truth))
        raise ValueError(f"{submission} does not list the images of {answer_key}: missing {missing[:10]}, "
                         f"extra {extra[:10]}.")
    images = sorted(truth)
    masks = [torch.as_tensor(np.stack([rle_decode(table[img], shape) for img in images]))[:, None].float()
             for table in (predicted, truth)]
    dice = compute_kaggle_dice(*masks)[:, 0]
    has_pred, has_true = (m.flatten(start_dim=1).amax(dim=1) > 0 for m in masks)
    return {
        "kaggle_score": dice.mean().item(),
        "dice_nerve": dice[has_true].mean().item() if bool(has_true.any()) else float("nan"),
        "presence_accuracy": (has_pred == has_true).float().mean().item(),
        "num_images": len(images),
        "num_nonempty": int(has_true.sum()),
        "num_predicted": int(has_pred.sum()),
    }


class KaggleDiceMetric(CumulativeIterationMetric):
    """
    Per-image Kaggle Dice (see :py:func:`compute_kaggle_dice`), accumulated over iterations.

    Its buffer holds one score per image and channel; ``aggregate`` reduces it (mean by default),
    so wrapped in ``monai.handlers.IgniteMetricHandler`` it can be the evaluator's
    ``key_val_metric`` and its per-image scores land in ``engine.state.metric_details``::

        IgniteMetricHandler(KaggleDiceMetric(), output_transform=from_engine(["pred", "label"]))

    Args:
        reduction: MONAI metric reduction mode, see ``monai.metrics.utils.do_metric_reduction``.
        get_not_nans: whether ``aggregate`` also returns the ``not_nans`` count.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """
        Args:
            y_pred: binarised prediction, shape (B, C, *spatial).
            y: binary ground truth, same shape.
        """
        return compute_kaggle_dice(y_pred, y)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            reduction: overrides ``self.reduction``; ``"none"`` gives the (N, C) per-image scores.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be PyTorch Tensor.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f


class KaggleSkillMetric(CumulativeIterationMetric):
    """
    How much better than predicting nothing: ``(S - S0) / (1 - S0)``, with ``S`` the Kaggle score
    (mean per-image Dice, :py:func:`compute_kaggle_dice`) and ``S0`` the Kaggle score of the all-empty
    prediction on the same images (the fraction of images without foreground).

    It is 0 for the all-empty model, 1 for a perfect one and negative for a model that scores below
    an empty submission; it orders models like the Kaggle score on a fixed validation set. On data
    where half the masks are empty, the Kaggle score of a model that has learnt nothing is already
    about 0.5; this metric lets early stopping wait until the model beats that
    (``monai_seg.handlers.ResumableEarlyStopHandler(start_above=0.0)``). When every image is
    empty (``S0 = 1``) it returns ``S - 1``.
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """
        Args:
            y_pred: binarised prediction, shape (B, C, *spatial).
            y: binary ground truth, same shape.

        Returns:
            (B, C, 2): the Kaggle Dice of the prediction and of an empty prediction.
        """
        return torch.stack([compute_kaggle_dice(y_pred, y), compute_kaggle_dice(torch.zeros_like(y), y)], dim=-1)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be PyTorch Tensor.")
        score, empty = data.reshape(-1, 2).mean(dim=0)
        return score - empty if empty >= 1 else (score - empty) / (1 - empty)


class BinarySegmentationMetrics(CumulativeIterationMetric):
    """
    All metrics of :py:data:`SEGMENTATION_METRICS` per image, accumulated over iterations.

    The buffer holds the per-image confusion matrices (N, C, 4); ``aggregate`` turns them into a
    dict of metrics, per image with ``reduction="none"`` or reduced (mean by default). Wrapped in
    ``IgniteMetricHandler`` the reduced dict (one-element tensors, as MONAI's reductions give) is
    flattened into ``engine.state.metrics``.

    Args:
        metric_names: keys of :py:data:`SEGMENTATION_METRICS`, default all.
        reduction: MONAI metric reduction mode, see ``monai.metrics.utils.do_metric_reduction``.
    """

    def __init__(
        self,
        metric_names: Sequence[str] = tuple(SEGMENTATION_METRICS),
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__()
        unknown = set(metric_names) - set(SEGMENTATION_METRICS)
        if unknown:
            raise ValueError(
                f"unknown metric names {sorted(unknown)}, expected a subset of {list(SEGMENTATION_METRICS)}."
            )
        self.metric_names = tuple(metric_names)
        self.reduction = reduction

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """
        Args:
            y_pred: binarised prediction, shape (B, C, *spatial).
            y: binary ground truth, same shape.

        Returns:
            confusion matrices, shape (B, C, 4).
        """
        return get_confusion_matrix(y_pred, y)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> dict[str, torch.Tensor]:
        """
        Args:
            reduction: overrides ``self.reduction``; ``"none"`` gives (N, C) per-image values.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be PyTorch Tensor.")
        values = segmentation_metrics_from_confusion_matrix(data, self.metric_names)
        return {name: do_metric_reduction(v, reduction or self.reduction)[0] for name, v in values.items()}


def write_segmentation_report(
    output_dir: str,
    confusion_matrix: torch.Tensor,
    filenames: Sequence[str],
    presence_prob: torch.Tensor | None = None,
    presence_threshold: float = 0.5,
    per_image_filename: str = "metrics_per_image.csv",
    summary_filename: str = "metrics_summary.json",
    extra_columns: Mapping[str, Sequence[float]] | None = None,
    extra_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """
    Write the per-image CSV and the summary JSON of a binary segmentation evaluation.

    The CSV has one row per image: ``filename``, every metric of :py:data:`SEGMENTATION_METRICS`
    (averaged over channels when C > 1), ``gt_presence`` (1 if the ground truth has any foreground)
    and, when given, ``presence_prob``. The JSON holds the mean of each metric over images,
    ``num_images``, ``num_nonempty``, ``num_empty`` and, when ``presence_prob`` is given,
    ``presence_accuracy`` and ``presence_auroc`` (see :py:func:`compute_presence_metrics`).
    Both files are written atomically.

    Args:
        output_dir: folder of the two files, created if missing.
        confusion_matrix: per-image confusion matrices, shape (N, C, 4).
        filenames: N image identifiers.
        presence_prob: optional presence probabilities, shape (N,).
        presence_threshold: threshold of the presence accuracy.
        per_image_filename: name of the CSV file.
        summary_filename: name of the JSON file.
        extra_columns: more per-image columns (name -> N values, e.g. a triage score), after the others.
        extra_summary: more summary entries (e.g. the areas of a retention curve).

    Returns:
        the summary written to the JSON file.

    Raises:
        ValueError: when the filenames, presence probabilities or extra columns do not give one value per image.
    """
    n = confusion_matrix.shape[0]
    extra_columns = dict(extra_columns or {})
    if any(len(values) != n for values in extra_columns.values()):
        raise ValueError(f"got {n} confusion matrices and extra columns of lengths "
                         f"{ {name: len(values) for name, values in extra_columns.items()} }.")
    if len(filenames) != n or (presence_prob is not None and presence_prob.numel() != n):
        raise ValueError(
            f"got {n} confusion matrices, {len(filenames)} filenames and "
            f"{None if presence_prob is None else presence_prob.numel()} presence probabilities."
        )
    metrics = {k: v.mean(dim=1) for k, v in segmentation_metrics_from_confusion_matrix(confusion_matrix).items()}
    gt_presence = (confusion_matrix[..., 0] + confusion_matrix[..., 3]).sum(dim=1) > 0  # TP + FN

    columns: dict[str, list] = {"filename": list(filenames), **{k: v.tolist() for k, v in metrics.items()}}
    columns["gt_presence"] = gt_presence.int().tolist()
    summary: dict[str, Any] = {k: v.mean().item() for k, v in metrics.items()}
    summary.update(num_images=n, num_nonempty=int(gt_presence.sum()), num_empty=n - int(gt_presence.sum()))
    if presence_prob is not None:
        presence_prob = presence_prob.reshape(-1).float()
        columns["presence_prob"] = presence_prob.tolist()
        summary.update(compute_presence_metrics(presence_prob, gt_presence, presence_threshold))
    columns.update({name: list(values) for name, values in extra_columns.items()})
    summary.update(extra_summary or {})

    os.makedirs(output_dir, exist_ok=True)
    atomic_write_csv(os.path.join(output_dir, per_image_filename), columns, zip(*columns.values()))
    atomic_write_text(os.path.join(output_dir, summary_filename), json.dumps(summary, indent=2) + "\n")
    return summary
