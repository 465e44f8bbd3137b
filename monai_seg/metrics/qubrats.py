"""The QU-BraTS uncertainty score: how well an uncertainty map filters out a segmentation's errors.

The BraTS 2019-2020 uncertainty challenge (QU-BraTS) scores a binary segmentation together with an
uncertainty map on [0, 100] (0 certain, 100 uncertain). At each threshold tau of a grid over [0, 100],
the voxels with uncertainty > tau are filtered out, and three curves are recorded:

- ``dice``: the Dice of the remaining voxels (prediction and ground truth both restricted to them);
- ``ftp``: the filtered true positives, (TP - TP kept at tau) / TP;
- ``ftn``: the filtered true negatives, (TN - TN kept at tau) / TN, TN counted inside the brain.

Their areas under the curve over tau (normalised to [0, 1]) make the score of one case and region::

    score = (auc_dice + (1 - auc_ftp) + (1 - auc_ftn)) / 3

A good map lets the Dice rise as tau falls (the errors are the uncertain voxels) while filtering few of
the correct voxels. Higher is better; a map that is zero everywhere (no filtering at any tau) scores
(Dice + 2) / 3, and a map that is 100 everywhere about 1/3.

These choices follow the challenge's reference implementation,
https://github.com/RagMeh11/QU-BraTS/blob/master/BraTS_Seg_Uncertainty.py:

- thresholds: ``num_steps + 1`` evenly spaced values 0, 100 / num_steps, ..., 100 (its ``--num_points``,
  default 40: 41 thresholds 0, 2.5, ..., 100); a voxel is kept at tau when its uncertainty <= tau.
  The script builds them with ``np.arange(0, 100 + EPS, 100 / num_points)``, which includes 100 under
  NumPy 1 (the challenge's); under NumPy >= 2 the float32 ``EPS`` no longer lifts the stop above 100
  and the script silently drops the threshold 100. This module always includes it;
- Dice of the kept voxels over the whole image (no brain mask), 1 when prediction and ground truth are
  both empty after filtering (so an empty ground truth with an empty prediction scores Dice 1, and
  filtering out every false positive of an empty ground truth also gives 1);
- FTP and FTN are ratios against the unfiltered counts, both counted inside the brain mask, with
  ``EPS`` (float32 machine epsilon) added to the denominator: 0 when there is no true positive
  (no true negative);
- AUC: the trapezoid rule over the thresholds, divided by 100 (the range of tau);
- brain mask: the script reads a brain mask, or the T1 image, and takes its voxels > 0.

The combination into one score is the paper's (Mehta et al. 2022, the score of one tumour entity); the
reference script stops at the three AUCs. Where this module differs from the script, and why:

- the script expects maps already on [0, 100]; here ``uncertainty_range`` = (low, high) maps a map onto
  it linearly, ``100 * (u - low) / (high - low)``, clipped to [0, 100] (MONAI ``ScaleIntensityRange``
  with ``clip=True``), so that the inferer's maps can be scored with their known bounds
  (:func:`~monai_seg.metrics.max_uncertainty`: 0.5 for std, ln 2 per sigmoid channel for the entropies);
- the brain mask is optional: without one every voxel counts, which inflates the true negatives with
  easy background and lowers FTN; for BraTS pass the non-zero voxels of the input,
  ``(image != 0).any(1, keepdim=True)``. Non-zero rather than the script's > 0, because the bundles'
  z-normalised images keep a zero background but have negative brain voxels;
- counting: one pass over the voxels sorts them into threshold bins (``torch.bucketize``) and counts
  each class of voxel per bin (``torch.bincount``); cumulative sums give the kept counts at every
  threshold, instead of one mask per threshold.

Reference:
    Mehta et al., "QU-BraTS: MICCAI BraTS 2020 Challenge on Quantifying Uncertainty in Brain Tumor
    Segmentation - Analysis of Ranking Scores and Benchmarking Results", MELBA 2022,
    https://www.melba-journal.org/papers/2022:026.html
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, convert_to_tensor

__all__ = [
    "QUBRATS_METRICS",
    "QUBraTSMetric",
    "compute_qubrats_curves",
    "compute_qubrats_score",
]

QUBRATS_METRICS: tuple[str, ...] = ("auc_dice", "auc_ftp", "auc_ftn", "score")
"""Names of the values per case and region, in the order of :class:`QUBraTSMetric`'s buffer."""

EPS = float(torch.finfo(torch.float32).eps)
"""Added to the FTP / FTN denominators, as in the reference implementation."""

# voxel classes counted per threshold: prediction * 4 + ground truth * 2 + brain
_CLASSES = 8
_TP, _FP, _FN = (6, 7), (4, 5), (2, 3)
_TP_BRAIN, _TN_BRAIN = 7, 1


def _check_options(uncertainty_range: Sequence[float], num_steps: int) -> tuple[float, float]:
    """Validate the range and the number of steps; return (low, high)."""
    low, high = (float(v) for v in uncertainty_range)
    if not low < high:
        raise ValueError(f"uncertainty_range must be (low, high) with low < high, got {tuple(uncertainty_range)}.")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
    return low, high


def _check_inputs(
    y_pred: torch.Tensor, y: torch.Tensor, uncertainty: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate the shapes; return plain tensors: prediction, label (bool), uncertainty, brain (bool)."""
    y_pred, y, uncertainty = (convert_to_tensor(x, track_meta=False) for x in (y_pred, y, uncertainty))
    if y_pred.ndim < 3 or y.shape != y_pred.shape:
        raise ValueError(
            f"y_pred and y must both be (B, R, *spatial) of one shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}."
        )
    one_map = (y_pred.shape[0], 1, *y_pred.shape[2:])
    if uncertainty.shape not in (y_pred.shape, one_map):
        raise ValueError(
            f"uncertainty must be {tuple(y_pred.shape)} or {one_map} (one map for all regions), "
            f"got {tuple(uncertainty.shape)}."
        )
    if not torch.isfinite(uncertainty).all():
        raise ValueError("uncertainty has NaN or infinite values.")
    if mask is None:
        brain = torch.ones(one_map, dtype=torch.bool, device=y_pred.device)
    else:
        brain = convert_to_tensor(mask, track_meta=False)
        if brain.shape != one_map:
            raise ValueError(f"mask must be {one_map} (B, 1, *spatial), got {tuple(brain.shape)}.")
        brain = brain != 0
    return y_pred > 0.5, y > 0.5, uncertainty, brain


def _kept_counts(
    pred: torch.Tensor,
    label: torch.Tensor,
    brain: torch.Tensor,
    uncertainty: torch.Tensor,
    uncertainty_range: tuple[float, float],
    thresholds: torch.Tensor,
) -> torch.Tensor:
    """Voxels of one image channel kept at each threshold (scaled uncertainty <= tau), per voxel class.

    Args:
        pred: (*spatial) bool prediction.
        label: (*spatial) bool ground truth.
        brain: (*spatial) bool brain mask.
        uncertainty: (*spatial) map, scaled from ``uncertainty_range`` onto [0, 100] and clipped.
        uncertainty_range: (low, high), low < high.
        thresholds: (K,) float64, increasing from 0 to 100.

    Returns:
        (K, 8) int64; column ``pred * 4 + label * 2 + brain``.
    """
    low, high = uncertainty_range
    scaled = uncertainty.double().sub_(low).mul_(100 / (high - low)).clamp_(0, 100)
    # bin k holds the voxels with thresholds[k - 1] < u <= thresholds[k]: kept at thresholds[j] for j >= k
    bins = torch.bucketize(scaled.flatten(), thresholds)
    classes = (pred.to(torch.uint8) * 4 + label.to(torch.uint8) * 2 + brain.to(torch.uint8)).flatten()
    counts = torch.bincount(bins.mul_(_CLASSES).add_(classes), minlength=thresholds.numel() * _CLASSES)
    return counts.view(-1, _CLASSES).cumsum(0)


def compute_qubrats_curves(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    uncertainty: torch.Tensor,
    uncertainty_range: Sequence[float] = (0.0, 100.0),
    mask: torch.Tensor | None = None,
    num_steps: int = 40,
) -> dict[str, torch.Tensor]:
    """The QU-BraTS curves of each case and region: Dice, FTP and FTN against the threshold.

    See the module docstring for the definitions and conventions.

    Args:
        y_pred: (B, R, *spatial) binary prediction per region (values > 0.5 are foreground).
        y: (B, R, *spatial) binary ground truth per region.
        uncertainty: (B, R, *spatial) uncertainty per region, or (B, 1, *spatial): one map for all regions.
        uncertainty_range: (low, high) of the map, scaled linearly onto [0, 100] and clipped; e.g.
            ``(0, max_uncertainty("entropy", "sigmoid", 3))``. The default takes the map as already on [0, 100].
        mask: (B, 1, *spatial) brain mask (non-zero = brain) for the FTP and FTN counts; None: every voxel.
        num_steps: the thresholds are ``linspace(0, 100, num_steps + 1)``.

    Returns:
        ``"thresholds"``: (num_steps + 1,) float64, increasing; ``"dice"``, ``"ftp"``, ``"ftn"``: (B, R,
        num_steps + 1) float64, the value at each threshold.

    Raises:
        ValueError: shapes that do not match, an empty or inverted range, non-finite uncertainty,
            ``num_steps`` < 1.
    """
    low, high = _check_options(uncertainty_range, num_steps)
    pred, label, uncertainty, brain = _check_inputs(y_pred, y, uncertainty, mask)
    thresholds = torch.linspace(0, 100, num_steps + 1, dtype=torch.float64, device=pred.device)
    (batch, regions), maps = pred.shape[:2], uncertainty.shape[1]
    # one image channel at a time: the memory of a few copies of one volume, not of the batch
    counts = [
        _kept_counts(pred[b, r], label[b, r], brain[b, 0], uncertainty[b, min(r, maps - 1)], (low, high), thresholds)
        for b in range(batch)
        for r in range(regions)
    ]
    kept = torch.stack(counts).view(batch, regions, num_steps + 1, _CLASSES).double()  # clipped: all kept at 100
    tp, fp, fn = (kept[..., list(c)].sum(-1) for c in (_TP, _FP, _FN))
    denominator = 2 * tp + fp + fn
    dice = torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), 1.0)

    def filtered(voxels: torch.Tensor) -> torch.Tensor:
        total = voxels[..., -1:]
        return (total - voxels) / (total + EPS)

    return {
        "thresholds": thresholds,
        "dice": dice,
        "ftp": filtered(kept[..., _TP_BRAIN]),
        "ftn": filtered(kept[..., _TN_BRAIN]),
    }


def compute_qubrats_score(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    uncertainty: torch.Tensor,
    uncertainty_range: Sequence[float] = (0.0, 100.0),
    mask: torch.Tensor | None = None,
    num_steps: int = 40,
) -> dict[str, torch.Tensor]:
    """The QU-BraTS AUCs and combined score of each case and region.

    Args: as :func:`compute_qubrats_curves`.

    Returns:
        one (B, R) float tensor per name of :data:`QUBRATS_METRICS`: ``auc_dice`` (higher is better),
        ``auc_ftp`` and ``auc_ftn`` (lower is better), all in [0, 1], and
        ``score = (auc_dice + (1 - auc_ftp) + (1 - auc_ftn)) / 3`` (higher is better).

    Raises:
        ValueError: as :func:`compute_qubrats_curves`.
    """
    curves = compute_qubrats_curves(y_pred, y, uncertainty, uncertainty_range, mask, num_steps)
    thresholds = curves["thresholds"]
    auc = {
        f"auc_{name}": torch.trapezoid(curves[name], thresholds, dim=-1) / (thresholds[-1] - thresholds[0])
        for name in ("dice", "ftp", "ftn")
    }
    auc["score"] = (auc["auc_dice"] + (1 - auc["auc_ftp"]) + (1 - auc["auc_ftn"])) / 3
    return {name: auc[name].float() for name in QUBRATS_METRICS}


class QUBraTSMetric(CumulativeIterationMetric):
    """The QU-BraTS uncertainty score (:func:`compute_qubrats_score`) per case and region, accumulated.

    Call it with the binary prediction as ``y_pred``, the ground truth as ``y`` and the map as keyword::

        metric = QUBraTSMetric(uncertainty_range=(0, max_uncertainty("entropy", "sigmoid", 3)))
        metric(y_pred=mask, y=label, uncertainty=entropy, mask=(image != 0).any(1, keepdim=True))
        metric.aggregate()  # {"auc_dice": ..., "auc_ftp": ..., "auc_ftn": ..., "score": ...}

    Inputs are batch-first tensors or lists of channel-first items (decollated); ``uncertainty`` and
    ``mask`` then follow ``y_pred`` (a list, or a batch-first tensor). MONAI's ``IgniteMetricHandler``
    passes only ``(y_pred, y)``, so an evaluator calls this metric, or the function, from its own handler.

    Args:
        uncertainty_range: (low, high) of the map, scaled onto [0, 100] (see :func:`compute_qubrats_curves`).
        num_steps: the thresholds are ``linspace(0, 100, num_steps + 1)``; 40 as in the challenge.
        reduction: MONAI metric reduction over cases and regions (``"mean"``, ``"mean_batch"``: per region,
            ``"none"``: (N, R) per case, ...).
    """

    def __init__(
        self,
        uncertainty_range: Sequence[float] = (0.0, 100.0),
        num_steps: int = 40,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__()
        self.uncertainty_range = _check_options(uncertainty_range, num_steps)
        self.num_steps = num_steps
        self.reduction = reduction

    def _compute_tensor(  # type: ignore[override]
        self,
        y_pred: torch.Tensor,
        y: torch.Tensor,
        uncertainty: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """
        Args:
            y_pred: (B, R, *spatial) binary prediction.
            y: (B, R, *spatial) binary ground truth.
            uncertainty: (B, R, *spatial) or (B, 1, *spatial) map.
            mask: (B, 1, *spatial) brain mask, or None.

        Returns:
            (B, R, 4): the values of :data:`QUBRATS_METRICS`.

        Raises:
            ValueError: without ``uncertainty``; bad inputs as :func:`compute_qubrats_curves`.
        """
        if uncertainty is None:
            raise ValueError("QUBraTSMetric needs the uncertainty map: call it with uncertainty=<map>.")
        scores = compute_qubrats_score(y_pred, y, uncertainty, self.uncertainty_range, mask, self.num_steps)
        return torch.stack([scores[name] for name in QUBRATS_METRICS], dim=-1)

    def _compute_list(  # type: ignore[override]
        self,
        y_pred: Sequence[torch.Tensor],
        y: Sequence[torch.Tensor],
        uncertainty: Sequence[torch.Tensor] | torch.Tensor | None = None,
        mask: Sequence[torch.Tensor] | torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Score channel-first items one by one, each with its own uncertainty map and mask."""
        n = len(y_pred)
        maps = [None] * n if uncertainty is None else uncertainty
        masks = [None] * n if mask is None else mask
        if y is None or not n == len(y) == len(maps) == len(masks):
            raise ValueError(
                f"y, uncertainty and mask must have one item per item of y_pred ({n}), got "
                f"{None if y is None else len(y)}, {len(maps)} and {len(masks)}."
            )
        batch = [[None if x is None else x[None] for x in item] for item in zip(y_pred, y, maps, masks)]
        return torch.cat([self._compute_tensor(p, t, uncertainty=u, mask=m) for p, t, u, m in batch])

    def aggregate(self, reduction: MetricReduction | str | None = None) -> dict[str, torch.Tensor]:
        """Reduce the per-case, per-region values.

        Args:
            reduction: overrides the one given at construction; ``"none"`` gives (N, R) per case.

        Returns:
            one tensor per name of :data:`QUBRATS_METRICS`.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor.")
        reduced, _ = do_metric_reduction(data.clone(), reduction or self.reduction)
        return dict(zip(QUBRATS_METRICS, reduced.unbind(-1)))
