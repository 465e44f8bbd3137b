"""Case-level triage: per-case uncertainty scores, retention curves, their CSV files and figure."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_dilation

from monai_seg.metrics import compute_retention_curve, compute_triage_score, write_retention_curve
from monai_seg.metrics.triage import _dilate
from monai_seg.visualize import save_retention_curve

# four cases whose curve is computed by hand below
QUALITY = [0.9, 0.5, 0.7, 0.3]
SCORES = [0.1, 0.8, 0.4, 0.6]


def _read_csv(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_retention_curve_by_hand():
    curve = compute_retention_curve(QUALITY, SCORES)
    # referral order, most uncertain first: case 1 (0.8), case 3 (0.6), case 2 (0.4), case 0 (0.1)
    assert curve.order.tolist() == [1, 3, 2, 0]
    np.testing.assert_allclose(curve.fractions, [0, 0.25, 0.5, 0.75])
    # kept: all (0.9+0.5+0.7+0.3)/4 = 0.6; without case 1 (0.9+0.7+0.3)/3 = 1.9/3; without 3: 1.6/2; without 2: 0.9
    np.testing.assert_allclose(curve.kept, [0.6, 1.9 / 3, 0.8, 0.9])
    # oracle refers 0.3, 0.5, 0.7 in turn: 0.6, (0.9+0.5+0.7)/3 = 0.7, 0.8, 0.9
    np.testing.assert_allclose(curve.oracle, [0.6, 0.7, 0.8, 0.9])
    np.testing.assert_allclose(curve.random, [0.6] * 4)
    # areas: trapezoids of width 0.25 over a span of 0.75
    # model: (0.6+0.6333)/2 + (0.6333+0.8)/2 + (0.8+0.9)/2 = 2.18333 -> 2.18333 * 0.25 / 0.75
    assert curve.auc == pytest.approx((0.6 + 2 * 1.9 / 3 + 2 * 0.8 + 0.9) / 2 / 3)
    # oracle: 0.65 + 0.75 + 0.85 = 2.25 -> 2.25 / 3 = 0.75
    assert curve.oracle_auc == pytest.approx(0.75)
    assert curve.random_auc == pytest.approx(0.6)
    assert curve.random_auc < curve.auc < curve.oracle_auc


def test_retention_curve_ties_by_hand():
    """Tied cases count as the mean quality of their ties (the expected curve over their orders)."""
    curve = compute_retention_curve([1.0, 0.4, 0.4], [0.5, 0.5, 0.2])
    assert curve.order.tolist() == [0, 1, 2]  # the review list keeps ties in input order
    # k=0: 1.8/3 = 0.6; k=1: case 0 or 1 referred, each with probability 1/2: (0.7 + 0.4) / 2 = 0.55,
    # i.e. (1.8 - 0.7) / 2 with 0.7 the mean of the tied cases; k=2: both tied referred, 0.4 kept
    np.testing.assert_allclose(curve.kept, [0.6, 0.55, 0.4])
    # the same cases in another input order give the same curve
    np.testing.assert_allclose(compute_retention_curve([0.4, 0.4, 1.0], [0.2, 0.5, 0.5]).kept, curve.kept)


def test_retention_curve_references():
    rng = np.random.default_rng(0)
    quality = rng.random(30)
    for scores in (rng.random(30), rng.integers(0, 3, 30).astype(float), quality):  # also with ties, and inverted
        curve = compute_retention_curve(quality, scores)
        assert (curve.oracle >= curve.kept - 1e-12).all()
        assert curve.oracle_auc >= curve.auc
    # a perfectly informative score (the error itself) gives the oracle curve, also for a lower-is-better quality
    np.testing.assert_allclose(compute_retention_curve(quality, 1 - quality).kept, curve.oracle)
    hd95 = rng.random(30) * 10
    lower = compute_retention_curve(hd95, hd95, higher_is_better=False)
    np.testing.assert_allclose(lower.kept, lower.oracle)
    assert lower.oracle[-1] == hd95.min()
    # a constant score is a random referral, exactly
    constant = compute_retention_curve(torch.tensor(quality), torch.zeros(30))
    np.testing.assert_allclose(constant.kept, constant.random)
    assert constant.auc == pytest.approx(constant.random_auc) and constant.random_auc == pytest.approx(quality.mean())
    one = compute_retention_curve([0.8], [0.1])
    assert one.kept.tolist() == [0.8] and one.auc == pytest.approx(0.8)


@pytest.mark.parametrize(
    "quality, scores, match",
    [
        ([0.1, 0.2, 0.3], [0.1, 0.2], r"quality of shape \(3,\) and scores of shape \(2,\)"),
        ([], [], "one value per case"),
        ([[0.1, 0.2]], [[0.1, 0.2]], "one value per case"),
        ([0.1, float("nan"), 0.3], [0.1, 0.2, 0.3], r"quality is not finite for cases \[1\]"),
        ([0.1, 0.2, 0.3], [0.1, 0.2, float("inf")], r"scores is not finite for cases \[2\]"),
    ],
)
def test_retention_curve_bad_input(quality, scores, match):
    with pytest.raises(ValueError, match=match):
        compute_retention_curve(quality, scores)


def test_write_retention_curve(tmp_path):
    curve = compute_retention_curve(QUALITY, SCORES)
    curve_file, cases_file = tmp_path / "triage" / "retention.csv", tmp_path / "triage" / "cases.csv"
    write_retention_curve(curve, curve_file, cases_file, case_ids=["a", "b", "c", "d"])
    rows = _read_csv(curve_file)
    assert rows[0] == ["fraction_referred", "kept", "random", "oracle"]
    np.testing.assert_allclose(np.array(rows[1:], dtype=float), [
        [0.0, 0.6, 0.6, 0.6], [0.25, 1.9 / 3, 0.6, 0.7], [0.5, 0.8, 0.6, 0.8], [0.75, 0.9, 0.6, 0.9]])
    cases = _read_csv(cases_file)
    assert cases[0] == ["rank", "case", "score", "quality", "referred_at"]
    assert cases[1:] == [
        ["1", "b", "0.8", "0.5", "0.25"],
        ["2", "d", "0.6", "0.3", "0.5"],
        ["3", "c", "0.4", "0.7", "0.75"],
        ["4", "a", "0.1", "0.9", "1.0"],
    ]
    write_retention_curve(curve, curve_file, cases_file)  # cases numbered in input order
    assert [row[1] for row in _read_csv(cases_file)[1:]] == ["1", "3", "2", "0"]
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="3 case ids for a retention curve of 4 cases"):
        write_retention_curve(curve, curve_file, cases_file, case_ids=["a", "b", "c"])


def test_save_retention_curve(tmp_path):
    path = tmp_path / "figures" / "retention.png"
    save_retention_curve(compute_retention_curve(QUALITY, SCORES), str(path), quality_name="Dice WT")
    assert Image.open(path).format == "PNG"
    assert not list(tmp_path.rglob("*.tmp*"))


def test_triage_score_band_2d():
    """One predicted pixel at (3, 3) of a 7 x 7 image; uncertainty 0.5 on it, 1 on its diagonal neighbour
    (2, 2) and 1 in the corner (0, 0)."""
    pred = torch.zeros(1, 1, 7, 7)
    pred[0, 0, 3, 3] = 1
    u = torch.zeros(1, 1, 7, 7)
    u[0, 0, 3, 3], u[0, 0, 2, 2], u[0, 0, 0, 0] = 0.5, 1.0, 1.0
    # band 0: the pixel itself; band 1: the 3 x 3 box, diagonals included, (0.5 + 1) / 9; band 3: all 49 pixels
    for band, expected in ((0, 0.5), (1, 1.5 / 9), (3, 2.5 / 49)):
        assert compute_triage_score(u, pred, "structure", band=band).item() == pytest.approx(expected)
    # per axis: rows 2..4 of column 3, (0.5 + 0 + 0) / 3
    assert compute_triage_score(u, pred, "structure", band=(1, 0)).item() == pytest.approx(0.5 / 3)
    assert compute_triage_score(u, pred, "mean").item() == pytest.approx(2.5 / 49)
    # inside a mask of the top three rows: the structure's band is cut to row 2, (0 + 1 + 0) / 3
    mask = torch.zeros(1, 1, 7, 7)
    mask[..., :3, :] = 1
    assert compute_triage_score(u, pred, "structure", band=1, mask=mask).item() == pytest.approx(1 / 3)
    assert compute_triage_score(u, pred, "mean", mask=mask).item() == pytest.approx(2 / 21)


def test_triage_score_band_3d_channels_and_empty_prediction():
    """A 5 x 5 x 5 volume, two channels sharing one map: channel 0 predicts the centre voxel, channel 1
    nothing (its score falls back to the whole-volume mean and does not see channel 0's structure)."""
    pred = torch.zeros(2, 2, 5, 5, 5)
    pred[:, 0, 2, 2, 2] = 1
    u = torch.zeros(2, 1, 5, 5, 5)
    u[:, 0, 1, 1, 1], u[:, 0, 0, 0, 0] = 1.0, 1.0  # a corner of the 3 x 3 x 3 box, and outside it
    u[1] *= 2  # the second case: twice the uncertainty
    scores = compute_triage_score(u, pred, "structure", band=1)
    assert scores.shape == (2, 2)
    np.testing.assert_allclose(scores.numpy(), [[1 / 27, 2 / 125], [2 / 27, 4 / 125]], rtol=1e-6)
    whole = torch.ones(2, 1, 5, 5, 5)  # one mask for both channels
    mean = compute_triage_score(u, pred, "mean", mask=whole)
    assert mean.shape == (2, 2)
    np.testing.assert_allclose(mean.numpy(), [[2 / 125] * 2, [4 / 125] * 2], rtol=1e-6)
    # one map per channel
    np.testing.assert_allclose(compute_triage_score(u.expand(-1, 2, -1, -1, -1), pred, band=1).numpy(), scores.numpy())


@pytest.mark.parametrize("radius", [(2, 1, 0), (0, 3, 1), 1, 9])
def test_band_is_a_box_dilation_per_channel(radius):
    """The band is SciPy's binary dilation by a (2r+1)-voxel box, channel by channel (borders count as empty)."""
    mask = np.random.default_rng(0).random((2, 2, 9, 8, 7)) > 0.95
    box = np.ones([2 * r + 1 for r in ((radius,) * 3 if isinstance(radius, int) else radius)], bool)
    expected = [[binary_dilation(channel, box) for channel in case] for case in mask]
    np.testing.assert_array_equal(_dilate(torch.from_numpy(mask), radius).numpy(), expected)


@pytest.mark.parametrize(
    "u_shape, pred_shape, mask_shape, score, match",
    [
        ((1, 1, 4, 4), (1, 1, 4, 5), None, "structure", r"uncertainty of shape \(1, 1, 4, 4\) does not match y_pred"),
        ((2, 1, 4, 4), (1, 1, 4, 4), None, "structure", "does not match y_pred"),
        ((1, 1, 4), (1, 1, 4), None, "structure", r"y_pred of shape \(1, 1, 4\) is neither"),
        ((1, 3, 4, 4), (1, 2, 4, 4), None, "structure", r"uncertainty of shape \(1, 3, 4, 4\) does not match"),
        ((1, 1, 4, 4), (1, 1, 4, 4), (1, 1, 4, 3), "structure", r"mask of shape \(1, 1, 4, 3\) does not match"),
        ((1, 1, 4, 4), (1, 1, 4, 4), None, "volume", "unknown triage score 'volume'"),
    ],
)
def test_triage_score_bad_input(u_shape, pred_shape, mask_shape, score, match):
    mask = None if mask_shape is None else torch.ones(mask_shape)
    with pytest.raises(ValueError, match=match):
        compute_triage_score(torch.rand(u_shape), torch.ones(pred_shape), score, mask=mask)


def test_triage_score_empty_mask():
    mask = torch.ones(2, 1, 4, 4)
    mask[1] = 0
    with pytest.raises(ValueError, match=r"mask is empty for cases \[1\]"):
        compute_triage_score(torch.rand(2, 1, 4, 4), torch.ones(2, 1, 4, 4), mask=mask)
    with pytest.raises(ValueError, match="negative"):
        compute_triage_score(torch.rand(1, 1, 4, 4), torch.ones(1, 1, 4, 4), band=-1)
