"""Metrics inside a field of view, against a hand computation."""

from __future__ import annotations

import pytest
import torch
from monai.metrics import ConfusionMatrixMetric, ROCAUCMetric

from monai_seg.metrics import BinarySegmentationMetrics, from_engine_fov, select_fov


def _mask(*pixels: int) -> torch.Tensor:
    """(1, 4, 4) mask with the given flat pixel indices set."""
    m = torch.zeros(16)
    m[list(pixels)] = 1.0
    return m.view(1, 4, 4)


# Image A: FOV = all but the last column (12 pixels). Inside it: label {0, 1, 4}, prediction {0, 4, 5}
# -> TP 2, FP 1, FN 1, TN 8. Outside it: a false positive (pixel 3) and a false negative (7), ignored.
# Image B: FOV = the top half (8 pixels). Inside it: label {2, 3}, prediction {2} -> TP 1, FP 0, FN 1,
# TN 6. Outside it: a false positive (pixel 12), ignored.
OUTPUT = [
    {"pred": _mask(0, 4, 5, 3), "label": _mask(0, 1, 4, 7), "fov_mask": _mask(*[i for i in range(16) if i % 4 != 3])},
    {"pred": _mask(2, 12), "label": _mask(2, 3), "fov_mask": _mask(*range(8))},
]
PER_IMAGE = {  # metric -> (image A, image B)
    "accuracy": (10 / 12, 7 / 8),
    "sensitivity": (2 / 3, 1 / 2),
    "specificity": (8 / 9, 1.0),
    "precision": (2 / 3, 1.0),
    "dice": (4 / 6, 2 / 3),
    "iou": (2 / 4, 1 / 2),
}
POOLED = {  # TP 3, FP 1, FN 2, TN 14 over both FOVs
    "accuracy": 17 / 20,
    "sensitivity": 3 / 5,
    "specificity": 14 / 15,
    "f1 score": 6 / 9,
    "threat score": 3 / 6,
}


def test_select_fov():
    image = torch.arange(32.0).view(2, 4, 4)
    fov = _mask(5, 6, 9)
    expected = torch.tensor([[5.0, 6.0, 9.0], [21.0, 22.0, 25.0]])
    torch.testing.assert_close(select_fov(image, fov), expected)
    torch.testing.assert_close(select_fov(image, fov[0]), expected)  # (*spatial) masks work too
    with pytest.raises(ValueError, match=r"field of view of shape \(1, 4, 5\)"):
        select_fov(image, torch.ones(1, 4, 5))


def test_per_image_metrics_inside_the_fov():
    y_pred, y = from_engine_fov(["pred", "label"])(OUTPUT)
    assert [p.shape for p in y_pred] == [(1, 12), (1, 8)]
    metric = BinarySegmentationMetrics(metric_names=tuple(PER_IMAGE))
    metric(y_pred, y)
    values = metric.aggregate(reduction="none")
    for name, expected in PER_IMAGE.items():
        torch.testing.assert_close(values[name], torch.tensor([[expected[0]], [expected[1]]]), msg=name)


def test_pooled_metrics_inside_the_fov():
    metric = ConfusionMatrixMetric(metric_name=tuple(POOLED), compute_sample=False)
    metric(*from_engine_fov(["pred", "label"])(OUTPUT))
    for name, value in zip(POOLED, metric.aggregate()):
        torch.testing.assert_close(value, torch.tensor([POOLED[name]]), msg=name)


def test_auc_inside_the_fov():
    """Scores 0.9 on predicted pixels, 0.1 elsewhere. Over the 20 FOV pixels: 5 positives (3 at 0.9, 2 at
    0.1) and 15 negatives (1 at 0.9, 14 at 0.1): AUC = (3 x 14 + (3 x 1 + 2 x 14) / 2) / (5 x 15)."""
    output = [{**item, "prob": 0.1 + 0.8 * item["pred"]} for item in OUTPUT]
    y_pred, y = from_engine_fov(["prob", "label"], concat=True)(output)
    assert y_pred.shape == y.shape == (20, 1)
    metric = ROCAUCMetric()
    metric(y_pred, y)
    assert metric.aggregate() == pytest.approx((42 + 31 / 2) / 75)
    assert from_engine_fov("prob", concat=True)(output).shape == (20, 1)  # a single key gives the tensor itself
