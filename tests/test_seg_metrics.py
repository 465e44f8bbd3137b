"""Per-image binary segmentation metrics, presence metrics and the evaluator report."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import IgniteMetricHandler, from_engine
from monai.transforms import Activationsd, Compose
from torch import nn

from monai_seg.metrics import (
    BinarySegmentationMetrics,
    KaggleDiceMetric,
    KaggleSkillMetric,
    compute_kaggle_dice,
    compute_presence_metrics,
    score_submission,
    write_segmentation_report,
)
from monai_seg.data import rle_encode, write_submission
from monai_seg.handlers import SegmentationReport
from monai_seg.transforms import PresenceGatingd


def _mask(*pixels: int) -> torch.Tensor:
    """(1, 1, 4, 4) mask with the given flat pixel indices set."""
    m = torch.zeros(16)
    m[list(pixels)] = 1.0
    return m.view(1, 1, 4, 4)


EMPTY = _mask()
# partial overlap: prediction 3 pixels, ground truth 4 pixels, 2 shared -> TP 2, FP 1, FN 2, TN 11
PARTIAL_PRED, PARTIAL_GT = _mask(0, 1, 2), _mask(1, 2, 5, 6)


class TestKaggleDice:
    @pytest.mark.parametrize(
        "pred, gt, expected",
        [
            (EMPTY, EMPTY, 1.0),
            (_mask(3), EMPTY, 0.0),
            (EMPTY, _mask(3), 0.0),
            (PARTIAL_PRED, PARTIAL_GT, 4 / 7),
            (PARTIAL_GT, PARTIAL_GT, 1.0),
        ],
    )
    def test_cases(self, pred, gt, expected):
        torch.testing.assert_close(compute_kaggle_dice(pred, gt), torch.tensor([[expected]]))

    def test_cumulative_metric(self):
        metric = KaggleDiceMetric()
        metric([EMPTY[0], PARTIAL_PRED[0]], [EMPTY[0], PARTIAL_GT[0]])  # a list of channel-first images
        metric(_mask(3), EMPTY)  # a batch-first tensor
        torch.testing.assert_close(metric.aggregate(reduction="none"), torch.tensor([[1.0], [4 / 7], [0.0]]))
        torch.testing.assert_close(metric.aggregate(), torch.tensor([(1 + 4 / 7) / 3]))
        metric.reset()
        metric(EMPTY, EMPTY)
        torch.testing.assert_close(metric.aggregate(), torch.tensor([1.0]))


class TestBinarySegmentationMetrics:
    def test_per_image_values(self):
        metric = BinarySegmentationMetrics()
        metric(torch.cat([PARTIAL_PRED, EMPTY, _mask(3, 4), EMPTY]), torch.cat([PARTIAL_GT, EMPTY, EMPTY, _mask(3)]))
        rows = metric.aggregate(reduction="none")
        expected = {
            # partial, empty/empty, false positives on an empty image, missed mask
            "dice": [4 / 7, 1.0, 0.0, 0.0],
            "iou": [2 / 5, 1.0, 0.0, 0.0],
            "sensitivity": [2 / 4, 1.0, 0.0, 0.0],
            "specificity": [11 / 12, 1.0, 14 / 16, 1.0],
            "precision": [2 / 3, 1.0, 0.0, 0.0],
            "f1": [4 / 7, 1.0, 0.0, 0.0],
            "accuracy": [13 / 16, 1.0, 14 / 16, 15 / 16],
        }
        assert set(rows) == set(expected)
        for name, values in expected.items():
            torch.testing.assert_close(rows[name], torch.tensor(values).view(4, 1), msg=name)
        torch.testing.assert_close(metric.aggregate()["dice"], torch.tensor([(4 / 7 + 1) / 4]))

    def test_subset_and_unknown_name(self):
        metric = BinarySegmentationMetrics(metric_names=("iou",))
        metric(PARTIAL_PRED, PARTIAL_GT)
        assert list(metric.aggregate()) == ["iou"]
        with pytest.raises(ValueError, match="unknown metric names"):
            BinarySegmentationMetrics(metric_names=("hausdorff",))


class TestPresenceMetrics:
    def test_known_auroc(self):
        # positives {0.9, 0.2} vs negatives {0.1, 0.8}: 3 of 4 pairs ranked right
        out = compute_presence_metrics(torch.tensor([0.1, 0.8, 0.9, 0.2]), torch.tensor([0, 0, 1, 1]))
        assert out == pytest.approx({"presence_accuracy": 0.5, "presence_auroc": 0.75})

    def test_single_class_auroc_is_none(self):
        with pytest.warns(UserWarning):
            out = compute_presence_metrics(torch.tensor([0.2, 0.7]), torch.tensor([1, 1]))
        assert out == {"presence_accuracy": 0.5, "presence_auroc": None}


class _EchoNet(nn.Module):
    """Stand-in two-head net: image channel 0 is the predicted mask, channel 1 the presence probability."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([20 * x[:, :1] - 10, torch.logit(x[:, 1:])], dim=1)


def _evaluation_data() -> list[dict]:
    cases = [  # (prediction, ground truth, presence probability)
        (EMPTY, EMPTY, 0.1),  # dice 1
        (_mask(3, 4), EMPTY, 0.8),  # false positive kept: dice 0
        (PARTIAL_PRED, PARTIAL_GT, 0.9),  # dice 4 / 7
        (PARTIAL_GT, PARTIAL_GT, 0.2),  # perfect mask gated away: dice 0
    ]
    return [
        {
            "image": MetaTensor(torch.cat([p[0], torch.full_like(p[0], c)]), meta={"filename_or_obj": f"{i}.tif"}),
            "label": g[0],
        }
        for i, (p, g, c) in enumerate(cases)
    ]


class TestSegmentationReport:
    def test_evaluator_writes_csv_and_json(self, tmp_path):
        evaluator = SupervisedEvaluator(
            device=torch.device("cpu"),
            val_data_loader=DataLoader(_evaluation_data(), batch_size=3),
            network=_EchoNet(),
            postprocessing=Compose(
                [Activationsd(keys="pred", sigmoid=True), PresenceGatingd(keys="pred", presence_key="presence")]
            ),
            key_val_metric={
                "val_dice": IgniteMetricHandler(KaggleDiceMetric(), output_transform=from_engine(["pred", "label"]))
            },
            val_handlers=[SegmentationReport(str(tmp_path), presence_transform=from_engine("presence"))],
        )
        evaluator.run()
        dice = [1.0, 0.0, 4 / 7, 0.0]
        assert evaluator.state.metrics["val_dice"] == pytest.approx(sum(dice) / 4)
        assert evaluator.state.metric_details["val_dice"].shape == (4, 1)

        with open(tmp_path / "metrics_per_image.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["filename"] for r in rows] == ["0.tif", "1.tif", "2.tif", "3.tif"]
        assert [float(r["dice"]) for r in rows] == pytest.approx(dice)
        assert [float(r["iou"]) for r in rows] == pytest.approx([1.0, 0.0, 2 / 5, 0.0])
        assert [int(r["gt_presence"]) for r in rows] == [0, 0, 1, 1]
        assert [float(r["presence_prob"]) for r in rows] == pytest.approx([0.1, 0.8, 0.9, 0.2])

        summary = json.loads((tmp_path / "metrics_summary.json").read_text())
        assert summary["dice"] == pytest.approx(sum(dice) / 4)
        assert summary["accuracy"] == pytest.approx((1 + 14 / 16 + 13 / 16 + 12 / 16) / 4)
        assert summary["presence_accuracy"] == pytest.approx(0.5)
        assert summary["presence_auroc"] == pytest.approx(0.75)
        assert (summary["num_images"], summary["num_nonempty"], summary["num_empty"]) == (4, 2, 2)
        assert sorted(os.listdir(tmp_path)) == ["metrics_per_image.csv", "metrics_summary.json"]  # no temp files

        evaluator.run()  # a second evaluation starts from empty records
        assert len((tmp_path / "metrics_per_image.csv").read_text().splitlines()) == 1 + 4

    def test_write_without_presence(self, tmp_path):
        cm = torch.tensor([[[2.0, 1.0, 11.0, 2.0]]])  # the partial case
        summary = write_segmentation_report(str(tmp_path / "out"), cm, ["a.tif"])
        assert summary["dice"] == pytest.approx(4 / 7) and "presence_auroc" not in summary
        header = (tmp_path / "out" / "metrics_per_image.csv").read_text().splitlines()[0]
        assert header == "filename,dice,iou,sensitivity,specificity,precision,f1,accuracy,gt_presence"
        with pytest.raises(ValueError, match="2 filenames"):
            write_segmentation_report(str(tmp_path), cm, ["a.tif", "b.tif"])


def test_kaggle_skill_is_zero_for_the_empty_model_and_one_for_a_perfect_one():
    truth = torch.cat([EMPTY, EMPTY, PARTIAL_GT, EMPTY])  # three of four images empty: S0 = 0.75
    for prediction, expected in ((torch.zeros_like(truth), 0.0), (truth, 1.0),
                                 (torch.cat([EMPTY, EMPTY, PARTIAL_PRED, EMPTY]), (0.75 + 4 / 7 / 4 - 0.75) / 0.25),
                                 (torch.cat([PARTIAL_PRED, EMPTY, EMPTY, EMPTY]), (0.5 - 0.75) / 0.25)):
        metric = KaggleSkillMetric()
        metric(prediction[:2], truth[:2])  # accumulated over two iterations
        metric(prediction[2:], truth[2:])
        assert metric.aggregate().item() == pytest.approx(expected)
    metric = KaggleSkillMetric()
    metric(PARTIAL_PRED, EMPTY)  # every image empty: S - 1
    assert metric.aggregate().item() == pytest.approx(-1.0)


def test_score_submission_against_an_answer_key(tmp_path):
    masks = [np.zeros((4, 5), np.uint8) for _ in range(4)]
    masks[1][1:3, 1:4] = 1  # 6 pixels
    masks[2][0, 0] = 1
    truth = write_submission({i + 1: rle_encode(m) for i, m in enumerate(masks)}, tmp_path / "truth.csv")
    guess = [m.copy() for m in masks]
    guess[1][1, 1] = 0  # 5 of 6 pixels: Dice 10 / 11
    guess[2][:] = 0  # a nerve missed
    guess[3][3, 4] = 1  # a mask on an empty image
    submission = write_submission({i + 1: rle_encode(m) for i, m in enumerate(guess)}, tmp_path / "sub.csv")
    scores = score_submission(submission, truth, shape=(4, 5))
    assert scores["kaggle_score"] == pytest.approx((1 + 10 / 11 + 0 + 0) / 4)
    assert scores["dice_nerve"] == pytest.approx((10 / 11 + 0) / 2)
    assert scores["presence_accuracy"] == pytest.approx(0.5)
    assert (scores["num_images"], scores["num_nonempty"], scores["num_predicted"]) == (4, 2, 2)
    write_submission({1: "", 2: ""}, tmp_path / "short.csv")
    with pytest.raises(ValueError, match="missing \\[3, 4\\]"):
        score_submission(tmp_path / "short.csv", truth, shape=(4, 5))
