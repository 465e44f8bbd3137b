"""Uncertainty quality metrics for :class:`~monai_seg.inferers.MCDropoutInferer` outputs.

A good uncertainty map is high where the prediction is wrong. These metrics take the inferer's combined
output (mean probability and maps, see :func:`~monai_seg.inferers.uncertainty_channels`) as ``y_pred`` and
the label as ``y``, so that they plug into an evaluator like any MONAI metric::

    "additional_metrics": {"uncertainty_auroc": {"_target_": "IgniteMetricHandler",
        "metric_fn": {"_target_": "monai_seg.metrics.UncertaintyErrorAUROCMetric", "uncertainty": "entropy"},
        "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}}

The per-pixel error is ``prediction != label``, the prediction being the thresholded mean (sigmoid) or its
argmax (softmax). Labels: for ``"sigmoid"`` binary (B, L, *spatial) with L <= C; only the first L prediction
channels are scored, so TwoHeadUNet's trailing presence channel is ignored. For ``"softmax"`` class indices
(B, 1, *spatial) or one-hot (B, C, *spatial).

References:
    Jungo & Reyes, "Assessing Reliability and Challenges of Uncertainty Estimations for Medical Image
    Segmentation", MICCAI 2019 (uncertainty-error overlap; AUROC of uncertainty against error).
    Guo et al., "On Calibration of Modern Neural Networks", ICML 2017 (expected calibration error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import CalibrationErrorMetric, CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from monai_seg.inferers.mc_dropout import DEFAULT_MAPS, uncertainty_channels, uncertainty_num_classes

__all__ = [
    "MeanCalibrationErrorMetric",
    "UncertaintyErrorAUROCMetric",
    "UncertaintyErrorOverlapMetric",
    "compute_uncertainty_error_auroc",
    "compute_uncertainty_error_overlap",
    "max_uncertainty",
]


def max_uncertainty(uncertainty: str, activation: str, num_classes: int) -> float:
    """The largest value a map can take: 0.5 for the standard deviations of probabilities (``std``, ``tta_std``),
    ln 2 (sigmoid) or ln C (softmax) for the entropies (``entropy``, ``mutual_info``, ``expected_entropy``).

    Raises:
        ValueError: for another map name.
    """
    if uncertainty in ("std", "tta_std"):
        return 0.5
    if uncertainty not in ("entropy", "mutual_info", "expected_entropy"):
        raise ValueError(f"no bound known for the map {uncertainty!r}: std, tta_std, entropy, mutual_info or "
                         "expected_entropy.")
    return math.log(2) if activation == "sigmoid" else math.log(max(num_classes, 2))


def compute_uncertainty_error_auroc(uncertainty: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """AUROC of ``uncertainty`` as a score for ``error``, per image and channel (Mann-Whitney U, ties averaged).

    1.0: every error is more uncertain than every correct pixel; 0.5: uninformative.

    Args:
        uncertainty: (B, C, *spatial) scores.
        error: (B, C, *spatial) bool, True where the prediction is wrong.

    Returns:
        (B, C) float; NaN where an image channel has no error or no correct pixel.
    """
    scores = uncertainty.flatten(2).double()
    errors = error.flatten(2).bool()
    result = torch.full(scores.shape[:2], float("nan"), dtype=torch.float64, device=scores.device)
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            e = errors[b, c]
            n_pos = int(e.sum())
            n_neg = e.numel() - n_pos
            if n_pos == 0 or n_neg == 0:
                continue
            ordered, order = scores[b, c].sort()
            _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
            mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # 1-based, ties averaged
            rank_sum = mean_rank[inverse][e[order]].sum()
            result[b, c] = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return result.float()


def compute_uncertainty_error_overlap(
    uncertainty: torch.Tensor, error: torch.Tensor, thresholds: torch.Tensor
) -> torch.Tensor:
    """Uncertainty-error overlap: Dice of ``uncertainty > t`` and ``error``, maximised over ``thresholds``.

    Args:
        uncertainty: (B, C, *spatial).
        error: (B, C, *spatial) bool.
        thresholds: (K,) increasing thresholds; pass one value for a fixed threshold.

    Returns:
        (B, C) float in [0, 1]; NaN where an image channel has no error.
    """
    scores = uncertainty.flatten(2).contiguous()
    errors = error.flatten(2).bool()
    thresholds = thresholds.to(scores)
    k = thresholds.numel()
    # bin i holds the scores in (t_{i-1}, t_i]; "above t_j" is then the bins j+1..K
    bins = torch.bucketize(scores, thresholds)
    offsets = torch.arange(bins.shape[0] * bins.shape[1], device=bins.device).view(*bins.shape[:2], 1) * (k + 1)
    flat = (bins + offsets).flatten()
    size = bins.shape[0] * bins.shape[1] * (k + 1)
    counts = torch.bincount(flat, minlength=size).view(*bins.shape[:2], k + 1)
    hits = torch.bincount(flat, weights=errors.flatten().double(), minlength=size).view(*bins.shape[:2], k + 1)
    above = counts.flip(-1).cumsum(-1).flip(-1)[..., 1:].double()  # |U_j|
    overlap = hits.flip(-1).cumsum(-1).flip(-1)[..., 1:]  # |U_j & E|
    n_err = errors.sum(-1, keepdim=True).double()
    dice = 2 * overlap / (above + n_err).clamp_min(1)
    result = dice.max(-1).values
    return torch.where(n_err[..., 0] > 0, result, torch.full_like(result, float("nan"))).float()


class _UncertaintyErrorMetric(CumulativeIterationMetric):
    """Base: split the inferer output into the prediction error and one uncertainty map, score per image."""

    def __init__(
        self,
        uncertainty: str = "entropy",
        activation: str = "sigmoid",
        maps: Sequence[str] = DEFAULT_MAPS,
        threshold: float = 0.5,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        uncertainty_channels(1, activation, maps)  # validates
        if uncertainty == "mean" or uncertainty not in maps or "mean" not in maps:
            raise ValueError(f"maps {tuple(maps)} must contain 'mean' and the uncertainty map {uncertainty!r}.")
        self.uncertainty = uncertainty
        self.activation = activation
        self.maps = tuple(maps)
        self.threshold = threshold
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _error_and_uncertainty(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Return (error, uncertainty, C), both (B, L, *spatial) for sigmoid and (B, 1, *spatial) for softmax."""
        num_classes = uncertainty_num_classes(y_pred.shape[1], self.activation, self.maps)
        layout = uncertainty_channels(num_classes, self.activation, self.maps)
        mean, u = y_pred[:, layout["mean"]], y_pred[:, layout[self.uncertainty]]
        if self.activation == "sigmoid":
            labels = y.shape[1]
            if labels > num_classes:
                raise ValueError(f"label has {labels} channels, the prediction {num_classes}.")
            return (mean[:, :labels] > self.threshold) != (y > 0.5), u[:, :labels], num_classes
        target = y.argmax(1, keepdim=True) if y.shape[1] > 1 else y.long()
        return mean.argmax(1, keepdim=True) != target, u.mean(1, keepdim=True), num_classes

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Reduce the per-image, per-channel values, ignoring NaN (images without error).

        Args:
            reduction: as in MONAI's metrics (``"mean"``, ``"mean_batch"``, ``"none"``, ...); default: the
                one given at construction.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f


class UncertaintyErrorAUROCMetric(_UncertaintyErrorMetric):
    """AUROC of an uncertainty map as a detector of the per-pixel prediction error, per image.

    Args:
        uncertainty: the map to score: ``"std"`` (averaged over classes for softmax), ``"entropy"`` or
            ``"mutual_info"``.
        activation: the inferer's activation.
        maps: the inferer's maps, in its output order.
        threshold: probability threshold of the sigmoid prediction.
        reduction: MONAI metric reduction over images and channels; NaN values are ignored.
        get_not_nans: ``aggregate`` also returns the number of non-NaN values.
    """

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        error, u, _ = self._error_and_uncertainty(y_pred, y)
        return compute_uncertainty_error_auroc(u, error)


class UncertaintyErrorOverlapMetric(_UncertaintyErrorMetric):
    """Uncertainty-error overlap (UEO, Jungo & Reyes 2019): Dice of the thresholded uncertainty and the error.

    Args:
        uncertainty: the map to score (see :class:`UncertaintyErrorAUROCMetric`).
        activation: the inferer's activation.
        maps: the inferer's maps, in its output order.
        threshold: probability threshold of the sigmoid prediction.
        uncertainty_threshold: fixed threshold on the map, or ``None`` for the best of ``num_thresholds``
            thresholds spread evenly over (0, largest possible value of the map) (:func:`max_uncertainty`).
        num_thresholds: thresholds tried when ``uncertainty_threshold`` is None.
        reduction: MONAI metric reduction over images and channels; NaN values are ignored.
        get_not_nans: ``aggregate`` also returns the number of non-NaN values.
    """

    def __init__(
        self,
        uncertainty: str = "entropy",
        activation: str = "sigmoid",
        maps: Sequence[str] = DEFAULT_MAPS,
        threshold: float = 0.5,
        uncertainty_threshold: float | None = None,
        num_thresholds: int = 100,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(uncertainty, activation, maps, threshold, reduction, get_not_nans)
        self.uncertainty_threshold = uncertainty_threshold
        self.num_thresholds = num_thresholds

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        error, u, num_classes = self._error_and_uncertainty(y_pred, y)
        if self.uncertainty_threshold is not None:
            thresholds = torch.tensor([self.uncertainty_threshold])
        else:
            top = max_uncertainty(self.uncertainty, self.activation, num_classes)
            thresholds = torch.linspace(0, top, self.num_thresholds + 1)[:-1]
        return compute_uncertainty_error_overlap(u, error, thresholds)


class MeanCalibrationErrorMetric(CalibrationErrorMetric):
    """MONAI's :class:`~monai.metrics.CalibrationErrorMetric` (ECE by default) of the Monte-Carlo mean probability.

    Slices the ``mean`` channels out of the inferer output and one-hot encodes softmax labels, then defers to
    MONAI: per image and class, the bin-count weighted gap between mean probability and label frequency.

    Args:
        activation: the inferer's activation.
        maps: the inferer's maps, in its output order.
        kwargs: :class:`~monai.metrics.CalibrationErrorMetric` arguments (``num_bins``,
            ``include_background``, ``calibration_reduction``, ``metric_reduction``, ...).
    """

    def __init__(self, activation: str = "sigmoid", maps: Sequence[str] = DEFAULT_MAPS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if "mean" not in uncertainty_channels(1, activation, maps):
            raise ValueError(f"maps {tuple(maps)} must contain 'mean'.")
        self.activation = activation
        self.maps = tuple(maps)

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        num_classes = uncertainty_num_classes(y_pred.shape[1], self.activation, self.maps)
        mean = y_pred[:, uncertainty_channels(num_classes, self.activation, self.maps)["mean"]]
        if self.activation == "sigmoid":
            mean = mean[:, : y.shape[1]]
        elif y.shape[1] == 1:
            y = torch.nn.functional.one_hot(y[:, 0].long(), num_classes).movedim(-1, 1)
        return super()._compute_tensor(mean, y.to(mean.dtype), **kwargs)
