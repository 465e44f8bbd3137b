"""Uncertainty quality metrics against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from monai.metrics import CalibrationErrorMetric

from monai_seg.metrics import (
    MeanCalibrationErrorMetric,
    UncertaintyErrorAUROCMetric,
    UncertaintyErrorOverlapMetric,
    compute_uncertainty_error_auroc,
    compute_uncertainty_error_overlap,
    max_uncertainty,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def pairwise_auroc(scores: torch.Tensor, errors: torch.Tensor) -> float:
    """P(score of an error > score of a correct pixel) + P(equal) / 2, over all pairs."""
    pos, neg = scores[errors], scores[~errors]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean()).item()


def test_auroc_matches_pairwise_definition_with_ties() -> None:
    torch.manual_seed(0)
    scores = torch.randint(0, 5, (2, 3, 7, 6)).float()  # many ties
    errors = torch.rand(2, 3, 7, 6) > 0.6
    result = compute_uncertainty_error_auroc(scores, errors)
    for b in range(2):
        for c in range(3):
            assert result[b, c].item() == pytest.approx(pairwise_auroc(scores[b, c].flatten(), errors[b, c].flatten()))


def test_auroc_extremes_and_nan() -> None:
    errors = torch.tensor([[[True, False, False, True]]])
    assert compute_uncertainty_error_auroc(torch.tensor([[[0.9, 0.1, 0.2, 0.8]]]), errors).item() == 1.0
    assert compute_uncertainty_error_auroc(torch.tensor([[[0.1, 0.9, 0.8, 0.2]]]), errors).item() == 0.0
    assert torch.isnan(compute_uncertainty_error_auroc(torch.rand(1, 1, 4), torch.zeros(1, 1, 4, dtype=torch.bool)))


def test_overlap_fixed_threshold_and_best_threshold() -> None:
    u = torch.tensor([[[0.05, 0.3, 0.6, 0.9, 0.2, 0.7]]])
    e = torch.tensor([[[False, False, True, True, True, False]]])
    # u > 0.5 -> {2, 3, 5}; error {2, 3, 4}: Dice = 2 * 2 / (3 + 3)
    fixed = compute_uncertainty_error_overlap(u, e, torch.tensor([0.5]))
    assert fixed.item() == pytest.approx(4 / 6)
    thresholds = torch.linspace(0, 1, 21)[:-1]
    best = max(2 * ((u > t) & e).sum() / ((u > t).sum() + e.sum()) for t in thresholds)
    assert compute_uncertainty_error_overlap(u, e, thresholds).item() == pytest.approx(best.item())
    assert torch.isnan(compute_uncertainty_error_overlap(u, torch.zeros_like(e), thresholds)).all()


def mc_output(mean: torch.Tensor, uncertainty: torch.Tensor) -> torch.Tensor:
    """A sigmoid MCDropoutInferer output, [mean, std, entropy, mutual_info], with ``uncertainty`` as entropy."""
    return torch.cat([mean, torch.zeros_like(mean), uncertainty, torch.zeros_like(mean)], dim=1)


def test_metrics_on_inferer_output_ignore_presence_channel() -> None:
    torch.manual_seed(0)
    label = (torch.rand(3, 1, 8, 8) > 0.5).float()
    mean = torch.cat([torch.rand(3, 1, 8, 8), torch.full((3, 1, 8, 8), 0.9)], dim=1)  # + presence channel
    entropy = torch.rand(3, 2, 8, 8)
    y_pred = mc_output(mean, entropy)
    error = (mean[:, :1] > 0.5) != (label > 0.5)

    auroc = UncertaintyErrorAUROCMetric("entropy")
    auroc(y_pred, label)
    expected = compute_uncertainty_error_auroc(entropy[:, :1], error)
    assert auroc.get_buffer().shape == (3, 1)
    assert auroc.aggregate().item() == pytest.approx(expected.mean().item())

    ueo = UncertaintyErrorOverlapMetric("entropy", uncertainty_threshold=0.5)
    ueo([p for p in y_pred], [y for y in label])  # decollated lists, as in an evaluator
    assert ueo.aggregate().item() == pytest.approx(
        compute_uncertainty_error_overlap(entropy[:, :1], error, torch.tensor([0.5])).mean().item()
    )


def test_softmax_metrics_use_argmax_error_and_summed_entropy() -> None:
    torch.manual_seed(0)
    probs = torch.rand(2, 3, 6, 6).softmax(1)
    label = torch.randint(0, 3, (2, 1, 6, 6))
    entropy = torch.rand(2, 1, 6, 6)
    y_pred = torch.cat([probs, torch.zeros_like(probs), entropy, torch.zeros_like(entropy)], dim=1)
    metric = UncertaintyErrorAUROCMetric("entropy", activation="softmax")
    metric(y_pred, label)
    error = probs.argmax(1, keepdim=True) != label
    torch.testing.assert_close(metric.get_buffer(), compute_uncertainty_error_auroc(entropy, error))
    one_hot = torch.nn.functional.one_hot(label[:, 0], 3).movedim(-1, 1)
    metric.reset()
    metric(y_pred, one_hot)
    torch.testing.assert_close(metric.get_buffer(), compute_uncertainty_error_auroc(entropy, error))


def test_calibration_defers_to_monai_on_the_mean() -> None:
    torch.manual_seed(0)
    probs = torch.rand(2, 3, 8, 8).softmax(1)
    label = torch.randint(0, 3, (2, 1, 8, 8))
    y_pred = torch.cat([probs, torch.zeros_like(probs), torch.rand(2, 2, 8, 8)], dim=1)
    ours = MeanCalibrationErrorMetric(activation="softmax", num_bins=10)
    ours(y_pred, label)
    monai = CalibrationErrorMetric(num_bins=10)
    monai(probs, torch.nn.functional.one_hot(label[:, 0], 3).movedim(-1, 1).float())
    torch.testing.assert_close(ours.get_buffer(), monai.get_buffer())
    assert ours.aggregate().item() == pytest.approx(monai.aggregate().item())


def test_calibration_of_a_perfectly_calibrated_bin() -> None:
    """All pixels at p = 0.25, a quarter of them foreground: ECE 0; all foreground: ECE 0.75."""
    mean = torch.full((1, 1, 4, 4), 0.25)
    label = torch.zeros(1, 1, 4, 4)
    label[..., 0, :] = 1
    metric = MeanCalibrationErrorMetric()
    metric(mc_output(mean, torch.zeros_like(mean)), label)
    assert metric.aggregate().item() == pytest.approx(0.0, abs=1e-6)
    metric.reset()
    metric(mc_output(mean, torch.zeros_like(mean)), torch.ones_like(label))
    assert metric.aggregate().item() == pytest.approx(0.75)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        UncertaintyErrorAUROCMetric("variance")
    with pytest.raises(ValueError):
        UncertaintyErrorAUROCMetric("std", maps=("mean", "entropy"))
    metric = UncertaintyErrorAUROCMetric("entropy")
    with pytest.raises(ValueError):
        metric(torch.rand(1, 4, 4, 4), torch.ones(1, 2, 4, 4))  # 1 class, 2 label channels


def test_max_uncertainty_bounds_every_map():
    assert max_uncertainty("std", "sigmoid", 1) == max_uncertainty("tta_std", "softmax", 3) == 0.5
    for name in ("entropy", "mutual_info", "expected_entropy"):
        assert max_uncertainty(name, "sigmoid", 3) == pytest.approx(math.log(2))
        assert max_uncertainty(name, "softmax", 3) == pytest.approx(math.log(3))
    with pytest.raises(ValueError, match="no bound known for the map 'mean'"):
        max_uncertainty("mean", "sigmoid", 1)
