"""Case-level triage: one uncertainty score per case, and the retention curve that tells whether it ranks well.

A reader who can review only some cases wants the model's worst ones. :func:`compute_triage_score` sums an
uncertainty map (the inferer's ``std``, ``entropy`` or ``mutual_info``) up into one score per case and
channel; :func:`compute_retention_curve` refers the cases to a human, most uncertain first, and records the
mean quality (e.g. Dice) of the cases the model keeps against the fraction referred, beside the expected
curve of a random referral and the curve of an oracle that refers the worst cases first;
:func:`write_retention_curve` writes the curve and the cases in referral order as CSV.

The retention curve follows the referral curves of Leibig et al. 2017: the quality is averaged over the
retained cases only. The error-retention curves of the Shifts benchmark (Malinin et al. 2021) instead
average over all cases with the referred ones counted as perfect; at a referral fraction f the two are
related by ``shifts = (1 - f) * kept + f * perfect``, so either can be drawn from :class:`RetentionCurve`.

References:
    C. Leibig et al., "Leveraging uncertainty information from deep neural networks for disease
    detection", Scientific Reports 7, 17816, 2017, https://doi.org/10.1038/s41598-017-17876-z

    A. Malinin et al., "Shifts: A Dataset of Real Distributional Shift Across Multiple Large-Scale Tasks",
    NeurIPS Datasets and Benchmarks 2021, https://arxiv.org/abs/2107.07455

    A. Jungo and M. Reyes, "Assessing Reliability and Challenges of Uncertainty Estimations for Medical
    Image Segmentation", MICCAI 2019, https://arxiv.org/abs/1907.03338
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.utils import convert_to_numpy, convert_to_tensor, ensure_tuple_rep

from monai_seg.utils import atomic_write_csv

__all__ = [
    "TRIAGE_SCORES",
    "compute_interval_referral_score",
    "RetentionCurve",
    "compute_retention_curve",
    "compute_triage_score",
    "write_retention_curve",
]

TRIAGE_SCORES: tuple[str, ...] = ("mean", "structure")
"""Names of the per-case scores of :func:`compute_triage_score`."""


def _dilate(mask: torch.Tensor, radius: int | Sequence[int]) -> torch.Tensor:
    """Binary dilation of each channel by a box: a voxel is set when a voxel of its channel in ``mask`` lies
    within ``radius`` voxels along every axis (Chebyshev distance; ``radius`` times the 3 x 3 (x 3) element).

    The box is separable: one axis at a time, the mask is OR-ed with its copies shifted by 1..r voxels, with
    bool tensor ops on the mask's device (on CPU, several times faster than max pooling). Not MONAI's
    ``monai.transforms.utils_morphological_ops.dilate``: its (C, C, ...) kernel dilates every channel by the
    union of all channels (the BraTS regions would leak into each other), and it sums a full box per voxel.

    Args:
        mask: shape (B, C, H, W) or (B, C, H, W, D), nonzero inside.
        radius: voxels, one for all axes or one per spatial axis (anisotropic spacing); 0 leaves an axis as is.

    Returns:
        a bool tensor of the shape of ``mask``.

    Raises:
        ValueError: when ``mask`` is not 2D or 3D, or a radius is negative.
    """
    spatial_dims = mask.ndim - 2
    if spatial_dims not in (2, 3):
        raise ValueError(f"mask of shape {tuple(mask.shape)} is neither (B, C, H, W) nor (B, C, H, W, D).")
    radii = ensure_tuple_rep(radius, spatial_dims)
    if min(radii) < 0:
        raise ValueError(f"dilation radius {radius} is negative.")
    out = mask != 0
    for axis, r in enumerate(radii, start=2):
        source, size = out, out.shape[axis]
        out = source.clone()
        for shift in range(1, min(r, size - 1) + 1):
            out.narrow(axis, shift, size - shift).logical_or_(source.narrow(axis, 0, size - shift))
            out.narrow(axis, 0, size - shift).logical_or_(source.narrow(axis, shift, size - shift))
    return out


def compute_triage_score(
    uncertainty: torch.Tensor,
    y_pred: torch.Tensor,
    score: str = "structure",
    band: int | Sequence[int] = 2,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """One uncertainty score per case and channel, to rank the cases for review (higher = refer first).

    ``score`` chooses where the map is averaged; each choice catches what the other misses:

    - ``"mean"``: over the whole image, or inside ``mask`` (the brain, the field of view). It sees doubt
      wherever it lies, also far from the prediction (a structure the model half found and left out) and
      doubt over the whole input (an unfamiliar protocol or an artefact). But the background dominates it:
      a small structure's doubt is diluted by the image size, and cases with small and large structures are
      not comparable.
    - ``"structure"``: inside the predicted structure dilated by ``band`` voxels (and inside ``mask``), so
      that the uncertain ring along the predicted boundary counts while the certain background does not.
      It asks "is this prediction doubtful?" independently of the image size, which tracks a relative
      quality such as Dice. When nothing is predicted in a channel of a case, there is no structure to
      average over and the score falls back to ``"mean"`` (the whole image or ``mask``): an empty
      prediction is then as doubtful as the image as a whole. It misses doubt away from the prediction.

    No volume-weighted score (the sum of the map over the structure): it ranks the large structures first,
    whose boundaries are longer, which tracks an absolute volume error rather than Dice; multiply the
    ``"structure"`` score by the band's voxel count where that is wanted. Everything runs as torch ops on the
    map's device.

    A small structure is all boundary and scores high under ``"structure"`` even when it is right (see
    docs/uncertainty.md); compare scores only between runs of the same model, map and sampling. A case
    the model is confidently wrong about has a low score under every choice: the map shows doubt, not
    error. The voxel-wise uncertainty-error overlap of Jungo and Reyes 2019 checks the map; the retention
    curve (:func:`compute_retention_curve`) checks the per-case score.

    Args:
        uncertainty: the map, shape (B, C, *spatial) or (B, 1, *spatial) for all channels, 2D or 3D.
        y_pred: the predicted mask, shape (B, C, *spatial), nonzero inside.
        score: one of :data:`TRIAGE_SCORES`.
        band: margin around the predicted structure in voxels, one for all axes or one per axis
            (``"structure"`` only).
        mask: the voxels that count (brain, field of view), shape (B, 1 or C, *spatial), nonzero inside;
            None counts every voxel.

    Returns:
        a float tensor of shape (B, C) on the device of ``uncertainty``.

    Raises:
        ValueError: on an unknown ``score``, shapes that do not match, or a case whose ``mask`` is empty.
    """
    if score not in TRIAGE_SCORES:
        raise ValueError(f"unknown triage score {score!r}, expected one of {TRIAGE_SCORES}.")
    u = convert_to_tensor(uncertainty, track_meta=False).float()
    pred = convert_to_tensor(y_pred, track_meta=False).to(u.device) != 0
    if pred.ndim not in (4, 5):
        raise ValueError(f"y_pred of shape {tuple(pred.shape)} is neither (B, C, H, W) nor (B, C, H, W, D).")
    fov = None if mask is None else convert_to_tensor(mask, track_meta=False).to(u.device) != 0
    for name, x in (("uncertainty", u), ("mask", fov)):
        if x is not None and (x.ndim != pred.ndim or x.shape[0] != pred.shape[0]
                              or x.shape[1] not in (1, pred.shape[1]) or x.shape[2:] != pred.shape[2:]):
            raise ValueError(f"{name} of shape {tuple(x.shape)} does not match y_pred of shape {tuple(pred.shape)}: "
                             "expected (B, C or 1, *spatial).")
    inside = (torch.ones_like(pred) if fov is None else fov.expand_as(pred)).flatten(2)  # (B, C, voxels)
    empty_mask = ~inside.any(-1)
    if empty_mask.any():
        raise ValueError(f"mask is empty for cases {sorted(set(empty_mask.nonzero()[:, 0].tolist()))}.")
    region = inside
    if score == "structure":
        region = _dilate(pred, band).flatten(2) & inside
        region = torch.where(region.any(-1, keepdim=True), region, inside)
    weights = region.to(u.dtype)
    return torch.einsum("bcn,bcn->bc", u.expand_as(pred).flatten(2), weights) / weights.sum(-1)


def compute_interval_referral_score(
    mean: float | torch.Tensor, std: float | torch.Tensor, threshold: float = 0.5, eps: float = 1e-6
) -> torch.Tensor:
    """How close a sampled probability's interval comes to a decision threshold: ``std / |mean - threshold|``.

    The interval ``[mean - k * std, mean + k * std]`` contains ``threshold`` exactly when the score is at
    least ``1 / k``, so referring the cases whose interval straddles the threshold refers those with the
    highest scores first, for every k: sorted by this score, the cases give the retention curve of all k at
    once. ``|mean - threshold|`` is clamped to ``eps`` (a finite score when the mean sits on the threshold); a
    zero std scores 0 (never referred).

    Args:
        mean, std: the mean and standard deviation of the samples (e.g. Monte-Carlo dropout presence
            probabilities), scalars or tensors of the same shape.
        threshold: the decision threshold.
        eps: the smallest distance to the threshold.

    Returns:
        a float tensor of the shape of ``mean``, >= 0.

    Raises:
        ValueError: when a ``std`` is negative.
    """
    m, s = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    if (s < 0).any():
        raise ValueError(f"std {s.tolist()} is negative.")
    return s / (m - threshold).abs().clamp_min(eps)


@dataclass(frozen=True)
class RetentionCurve:
    """A retention curve with its references; N cases, arrays of shape (N,).

    Attributes:
        fractions: the fractions of cases referred, k / N for k = 0, ..., N - 1 (at least one case kept).
        kept: mean quality of the cases kept when the k most uncertain are referred.
        random: its expected value under random referral: the mean quality at every fraction.
        oracle: the same when the k worst cases are referred: the best any score can do.
        auc, random_auc, oracle_auc: the areas under the three curves divided by the span of ``fractions``
            (the mean height of each curve; the value at 0 when N = 1).
        scores, quality: the inputs, per case in input order.
        order: the case indices in referral order, most uncertain first; equal scores in input order.
    """

    fractions: np.ndarray
    kept: np.ndarray
    random: np.ndarray
    oracle: np.ndarray
    auc: float
    random_auc: float
    oracle_auc: float
    scores: np.ndarray
    quality: np.ndarray
    order: np.ndarray


def _kept_mean(quality: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean quality of the kept cases after referring k = 0..N-1 cases, highest score first, and the order.

    Cases with equal scores are exchangeable: each contributes the mean quality of its group of ties, which
    is the expected curve over the orders of the ties (so the curve does not depend on the input order).
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_quality = scores[order], quality[order]
    group = np.concatenate([[0], np.cumsum(sorted_scores[1:] != sorted_scores[:-1])])
    group_mean = np.bincount(group, weights=sorted_quality) / np.bincount(group)
    kept_sum = np.cumsum(group_mean[group][::-1])[::-1]  # of the cases from k on
    return kept_sum / np.arange(len(quality), 0, -1), order


def _area(fractions: np.ndarray, curve: np.ndarray) -> float:
    """Trapezoid area under ``curve`` divided by the span of ``fractions``; the value itself for one point."""
    if len(fractions) == 1:
        return float(curve[0])
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(fractions)) / (fractions[-1] - fractions[0]))


def compute_retention_curve(
    quality: Sequence[float] | np.ndarray | torch.Tensor,
    scores: Sequence[float] | np.ndarray | torch.Tensor,
    higher_is_better: bool = True,
) -> RetentionCurve:
    """Refer the cases to a human, most uncertain first, and follow the mean quality of the cases kept.

    With N cases, k = 0, ..., N - 1 of them are referred (fraction k / N); at k = N nothing is left to
    average. The model's curve should rise above the random one (a flat line at the mean quality: a random
    referral keeps, in expectation, cases of average quality) and approach the oracle's, which refers the
    worst cases first. The areas compare them in one number each: ``auc`` > ``random_auc`` means the score
    ranks the bad cases first, and ``(auc - random_auc) / (oracle_auc - random_auc)`` is the share of the
    possible gain it achieves.

    Ties: cases with equal scores are exchangeable and the curve is the expected one over their orders (each
    tied case counts as the mean quality of its ties), so a constant score gives exactly the random curve and
    the curve never depends on the input order. ``order`` (the review list) puts tied cases in input order.

    Args:
        quality: one value per case, e.g. Dice.
        scores: one uncertainty score per case (higher = refer first), e.g. from :func:`compute_triage_score`.
        higher_is_better: False for a quality where lower is better (e.g. HD95): the oracle refers the highest
            first.

    Returns:
        the :class:`RetentionCurve`.

    Raises:
        ValueError: when ``quality`` and ``scores`` are not 1D of the same nonzero length, or hold NaN or
            infinite values (naming the cases).
    """
    q = np.asarray(convert_to_numpy(quality), dtype=np.float64)
    s = np.asarray(convert_to_numpy(scores), dtype=np.float64)
    if q.ndim != 1 or s.ndim != 1 or len(q) != len(s) or not len(q):
        raise ValueError(
            f"quality of shape {q.shape} and scores of shape {s.shape}: expected one value per case, same length."
        )
    for name, values in (("quality", q), ("scores", s)):
        if not np.isfinite(values).all():
            raise ValueError(f"{name} is not finite for cases {np.flatnonzero(~np.isfinite(values)).tolist()}.")
    n = len(q)
    fractions = np.arange(n) / n
    kept, order = _kept_mean(q, s)
    oracle, _ = _kept_mean(q, -q if higher_is_better else q)
    random = np.full(n, q.mean())
    return RetentionCurve(
        fractions=fractions,
        kept=kept,
        random=random,
        oracle=oracle,
        auc=_area(fractions, kept),
        random_auc=_area(fractions, random),
        oracle_auc=_area(fractions, oracle),
        scores=s,
        quality=q,
        order=order,
    )


def write_retention_curve(
    curve: RetentionCurve,
    curve_file: str | os.PathLike,
    cases_file: str | os.PathLike,
    case_ids: Sequence[str] | None = None,
) -> None:
    """Write the curve and the review list as two CSV files (atomically).

    - ``curve_file``: ``fraction_referred, kept, random, oracle``, one row per fraction;
    - ``cases_file``: ``rank, case, score, quality, referred_at``, the cases in referral order (rank 1 the
      most uncertain, for a reader to review the worst first); ``referred_at`` is the fraction referred
      once this case is, rank / N.

    Args:
        curve: from :func:`compute_retention_curve`.
        curve_file, cases_file: CSV files to write; their folders are created.
        case_ids: one name per case in input order; None numbers them 0, ..., N - 1.

    Raises:
        ValueError: when ``case_ids`` does not have one name per case.
    """
    n = len(curve.quality)
    ids = [str(i) for i in range(n)] if case_ids is None else [str(c) for c in case_ids]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} case ids for a retention curve of {n} cases.")
    for path in (curve_file, cases_file):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_csv(
        curve_file,
        ["fraction_referred", "kept", "random", "oracle"],
        zip(*(a.tolist() for a in (curve.fractions, curve.kept, curve.random, curve.oracle))),
    )
    atomic_write_csv(
        cases_file,
        ["rank", "case", "score", "quality", "referred_at"],
        (
            [rank + 1, ids[i], curve.scores[i].item(), curve.quality[i].item(), (rank + 1) / n]
            for rank, i in enumerate(curve.order.tolist())
        ),
    )
