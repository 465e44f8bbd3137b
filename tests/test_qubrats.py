"""The QU-BraTS uncertainty score against hand computations and a per-threshold brute force."""

from __future__ import annotations

import re

import pytest
import torch

from monai_seg.metrics import (
    QUBRATS_METRICS,
    QUBraTSMetric,
    compute_qubrats_curves,
    compute_qubrats_score,
    max_uncertainty,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def volume(*values: float, shape: tuple[int, ...] = (2, 3)) -> torch.Tensor:
    """One case, one region: (1, 1, *shape)."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, *shape)


def scores(*args: torch.Tensor, **kwargs: object) -> dict[str, float]:
    """compute_qubrats_score of one case and region, as floats."""
    return {k: v.item() for k, v in compute_qubrats_score(*args, **kwargs).items()}  # type: ignore[arg-type]


def approx(values: list[float]) -> object:
    return pytest.approx(values, abs=1e-6)


# six voxels (2 x 3 image): TP, TP, FP, FN, TN, TN with uncertainty 0, 30, 60, 80, 10, 0 on [0, 100]
PRED = volume(1, 1, 1, 0, 0, 0)
LABEL = volume(1, 1, 0, 1, 0, 0)
UNCERTAINTY = volume(0, 30, 60, 80, 10, 0)


def test_curves_and_score_by_hand() -> None:
    # 4 steps: tau = 0, 25, 50, 75, 100; a voxel is kept when u <= tau
    # tau=0:   kept TP(u0), TN(u0)                   Dice 2*1/2 = 1,     FTP 1/2, FTN 1/2 (TN u10 filtered)
    # tau=25:  + TN(u10)                             Dice 1,             FTP 1/2, FTN 0
    # tau=50:  + TP(u30)                             Dice 2*2/4 = 1,     FTP 0,   FTN 0
    # tau=75:  + FP(u60)                             Dice 2*2/5 = 0.8
    # tau=100: + FN(u80)                             Dice 2*2/6 = 2/3
    curves = compute_qubrats_curves(PRED, LABEL, UNCERTAINTY, num_steps=4)
    assert curves["thresholds"].tolist() == [0, 25, 50, 75, 100]
    assert curves["dice"][0, 0].tolist() == approx([1, 1, 1, 0.8, 2 / 3])
    assert curves["ftp"][0, 0].tolist() == approx([0.5, 0.5, 0, 0, 0])
    assert curves["ftn"][0, 0].tolist() == approx([0.5, 0, 0, 0, 0])
    # trapezoids of width 25, divided by 100:
    # Dice 0.25 * (1 + 1 + 0.9 + (0.8 + 2/3) / 2) = 0.908333; FTP 0.25 * (0.5 + 0.25) = 0.1875; FTN 0.25 * 0.25
    # score (0.908333 + (1 - 0.1875) + (1 - 0.0625)) / 3 = 0.886111
    assert scores(PRED, LABEL, UNCERTAINTY, num_steps=4) == approx(
        {"auc_dice": 0.9083333, "auc_ftp": 0.1875, "auc_ftn": 0.0625, "score": 0.8861111}
    )


def test_brain_mask_restricts_only_the_true_positives_and_negatives() -> None:
    # the last TN (u0) outside the brain: the only TN left (u10) is filtered at tau=0 -> FTN 1, 0, 0, 0, 0
    brain = volume(1, 1, 1, 1, 1, 0)
    curves = compute_qubrats_curves(PRED, LABEL, UNCERTAINTY, mask=brain, num_steps=4)
    assert curves["ftn"][0, 0].tolist() == approx([1, 0, 0, 0, 0])
    assert curves["dice"][0, 0].tolist() == approx([1, 1, 1, 0.8, 2 / 3])  # Dice ignores the mask
    # a TP outside the brain is not counted: the TP with u30 is the only one, filtered at tau = 0 and 25
    curves = compute_qubrats_curves(PRED, LABEL, UNCERTAINTY, mask=volume(0, 1, 1, 1, 1, 1), num_steps=4)
    assert curves["ftp"][0, 0].tolist() == approx([1, 1, 0, 0, 0])
    # AUC_FTN 0.25 * 0.5 = 0.125
    assert scores(PRED, LABEL, UNCERTAINTY, mask=brain, num_steps=4)["auc_ftn"] == pytest.approx(0.125)


def test_empty_ground_truth() -> None:
    # 2 x 2: FP(u50), TN(u0), TN(u0), TN(u100); no TP -> FTP 0 at every tau
    # Dice: tau 0, 25 -> FP filtered, both empty -> 1; tau >= 50 -> 2*0/1 = 0
    # FTN: the TN with u100 is filtered below 100 -> 1/3 at tau 0..75, 0 at 100
    pred, label, u = volume(1, 0, 0, 0, shape=(2, 2)), volume(0, 0, 0, 0, shape=(2, 2)), volume(50, 0, 0, 100, shape=(2, 2))
    curves = compute_qubrats_curves(pred, label, u, num_steps=4)
    assert curves["dice"][0, 0].tolist() == approx([1, 1, 0, 0, 0])
    assert curves["ftp"][0, 0].tolist() == approx([0, 0, 0, 0, 0])
    assert curves["ftn"][0, 0].tolist() == approx([1 / 3, 1 / 3, 1 / 3, 1 / 3, 0])
    # Dice 0.25 * (1 + 0.5) = 0.375; FTN 0.25 * (3 * 1/3 + 1/6) = 0.291667; score (0.375 + 1 + 0.708333) / 3
    assert scores(pred, label, u, num_steps=4) == approx(
        {"auc_dice": 0.375, "auc_ftp": 0.0, "auc_ftn": 0.2916667, "score": 0.6944444}
    )
    # empty ground truth and empty prediction: Dice 1 at every tau, whatever the map
    assert scores(torch.zeros_like(pred), label, u)["auc_dice"] == 1.0


def test_empty_prediction() -> None:
    # 2 x 2: FN(u50), FN(u100), TN(u0), TN(u0); no TP -> FTP 0; the TNs are never filtered -> FTN 0
    # Dice: tau 0, 25 -> both FNs filtered, both empty -> 1; tau >= 50 -> 0
    pred, label, u = volume(0, 0, 0, 0, shape=(2, 2)), volume(1, 1, 0, 0, shape=(2, 2)), volume(50, 100, 0, 0, shape=(2, 2))
    assert compute_qubrats_curves(pred, label, u, num_steps=4)["dice"][0, 0].tolist() == approx([1, 1, 0, 0, 0])
    # Dice 0.25 * (1 + 0.5) = 0.375; score (0.375 + 1 + 1) / 3 = 0.791667
    assert scores(pred, label, u, num_steps=4) == approx(
        {"auc_dice": 0.375, "auc_ftp": 0.0, "auc_ftn": 0.0, "score": 0.7916667}
    )


def test_perfect_prediction_with_zero_uncertainty_scores_one_in_3d() -> None:
    label = (torch.arange(24).view(1, 1, 2, 3, 4) % 3 == 0).float()
    result = scores(label, label, torch.zeros_like(label))
    assert result == {"auc_dice": 1.0, "auc_ftp": 0.0, "auc_ftn": 0.0, "score": 1.0}


def test_uniform_uncertainty_closed_form() -> None:
    # TP, FP, FN, TN: Dice D = 2 / 4 = 0.5. The default 41 thresholds 0, 2.5, ..., 100.
    pred, label = volume(1, 1, 0, 0, shape=(2, 2)), volume(1, 0, 1, 0, shape=(2, 2))
    # std 0.25 everywhere on (0, 0.5) -> 50: everything filtered for tau < 50 (j = 0..19), kept from 50 (j = 20..40)
    # Dice 1 then D: 2.5 * (20 + 21 D - (1 + D) / 2) / 100 = 0.4875 + 0.5125 D = 0.74375
    # FTP, FTN 1 then 0: 2.5 * (20 - 1/2) / 100 = 0.4875; score (0.74375 + 2 * 0.5125) / 3 = 0.5895833
    half = torch.full_like(pred, 0.25)
    assert scores(pred, label, half, uncertainty_range=(0, 0.5)) == approx(
        {"auc_dice": 0.74375, "auc_ftp": 0.4875, "auc_ftn": 0.4875, "score": 0.5895833}
    )
    # zero everywhere: nothing is ever filtered: Dice D, FTP = FTN = 0 -> score (D + 2) / 3
    assert scores(pred, label, torch.zeros_like(pred))["score"] == pytest.approx(2.5 / 3)
    # 100 everywhere: kept only at tau = 100: Dice 2.5 * (40 + D - (1 + D) / 2) / 100 = 0.9875 + 0.0125 D,
    # FTP = FTN = 2.5 * (40 - 1/2) / 100 = 0.9875 -> score (0.99375 + 2 * 0.0125) / 3 = 0.3395833
    assert scores(pred, label, torch.full_like(pred, 100.0))["score"] == pytest.approx(0.3395833, abs=1e-6)


def test_uncertainty_range_scales_and_clips() -> None:
    # range (1, 3): u = 2 -> 50; u = 5 -> 150, clipped to 100 (kept at tau = 100); u = 0 -> -50, clipped to 0
    u = volume(2, 5, 0, 1, shape=(2, 2))
    ones = torch.ones_like(u)  # four TPs
    ftp = compute_qubrats_curves(ones, ones, u, uncertainty_range=(1, 3), num_steps=4)["ftp"][0, 0]
    # tau 0, 25: two kept (the clipped 0s) -> FTP 1/2; tau 50, 75: three kept -> 1/4; tau 100: 0
    assert ftp.tolist() == approx([0.5, 0.5, 0.25, 0.25, 0])
    # the inferer's entropy on (0, ln 2): 0.4 ln 2 -> 40, kept from tau = 50
    top = max_uncertainty("entropy", "sigmoid", 1)
    ftp = compute_qubrats_curves(ones, ones, torch.full_like(u, 0.4 * top), (0, top), num_steps=4)["ftp"][0, 0]
    assert ftp.tolist() == approx([1, 1, 0, 0, 0])


def brute_force_curves(
    pred: torch.Tensor, label: torch.Tensor, u: torch.Tensor, brain: torch.Tensor, thresholds: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The definitions, one mask per threshold, one case and region: pred, label, brain bool; u on [0, 100]."""
    eps = torch.finfo(torch.float32).eps
    dice, ftp, ftn = [], [], []
    tp, tn = (pred & label & brain).sum(), (~pred & ~label & brain).sum()
    for tau in thresholds:
        kept = u <= tau
        p, t = pred & kept, label & kept
        union = p.sum() + t.sum()
        dice.append(1.0 if union == 0 else (2 * (p & t).sum() / union).item())
        ftp.append(((tp - (pred & label & brain & kept).sum()) / (tp + eps)).item())
        ftn.append(((tn - (~pred & ~label & brain & kept).sum()) / (tn + eps)).item())
    return {"dice": torch.tensor(dice), "ftp": torch.tensor(ftp), "ftn": torch.tensor(ftn)}


@pytest.mark.parametrize("spatial", [(9, 7), (4, 5, 6)])
def test_matches_brute_force_on_random_batches(spatial: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    shape = (2, 3, *spatial)
    label = torch.rand(shape) > 0.6
    pred = torch.where(torch.rand(shape) < 0.7, label, torch.rand(shape) > 0.5)
    pred[1, 2] = False  # an empty prediction
    label[0, 1] = False  # an empty ground truth
    u = torch.randint(0, 41, shape).float()  # on (0, 40): steps of 2.5 on [0, 100], ties on the thresholds
    brain = torch.rand(2, 1, *spatial) > 0.2
    curves = compute_qubrats_curves(pred, label, u, uncertainty_range=(0, 40), mask=brain.float())
    for b in range(2):
        for r in range(3):
            expected = brute_force_curves(pred[b, r], label[b, r], u[b, r] * 2.5, brain[b, 0], curves["thresholds"])
            for name in ("dice", "ftp", "ftn"):
                assert curves[name][b, r].tolist() == approx(expected[name].tolist()), (b, r, name)


def test_one_map_is_broadcast_and_2d_equals_3d() -> None:
    torch.manual_seed(1)
    label = torch.rand(2, 3, 4, 5, 6) > 0.5
    pred = torch.rand(2, 3, 4, 5, 6) > 0.5
    u = torch.rand(2, 1, 4, 5, 6)
    one = compute_qubrats_score(pred, label, u, uncertainty_range=(0, 1))
    expanded = compute_qubrats_score(pred, label, u.expand(2, 3, 4, 5, 6), uncertainty_range=(0, 1))
    flat = compute_qubrats_score(pred.flatten(3), label.flatten(3), u.flatten(3), uncertainty_range=(0, 1))
    for name in QUBRATS_METRICS:
        assert one[name].shape == (2, 3)
        assert torch.equal(one[name], expanded[name])
        assert torch.equal(one[name], flat[name])


def test_metric_accumulates_and_reduces() -> None:
    torch.manual_seed(2)
    batches = [
        (torch.rand(b, 3, 6, 7) > 0.5, torch.rand(b, 3, 6, 7) > 0.5, torch.rand(b, 1, 6, 7) * 0.5, torch.rand(b, 1, 6, 7))
        for b in (2, 1)
    ]
    metric = QUBraTSMetric(uncertainty_range=(0, 0.5))
    for pred, label, u, image in batches:
        metric(y_pred=pred, y=label, uncertainty=u, mask=image > 0.2)
    expected = [compute_qubrats_score(p, t, u, (0, 0.5), i > 0.2) for p, t, u, i in batches]
    for name in QUBRATS_METRICS:
        per_case = torch.cat([e[name] for e in expected])  # (3, 3)
        assert torch.allclose(metric.aggregate("none")[name], per_case)
        assert torch.allclose(metric.aggregate("mean_batch")[name], per_case.mean(0))
        assert metric.aggregate()[name].item() == pytest.approx(per_case.mean().item(), abs=1e-6)
    # decollated items (lists of channel-first tensors) give the same per-case values
    listed = QUBraTSMetric(uncertainty_range=(0, 0.5), reduction="none")
    pred, label, u, image = batches[0]
    listed(y_pred=list(pred), y=list(label), uncertainty=list(u), mask=list(image > 0.2))
    assert torch.allclose(listed.aggregate()["score"], expected[0]["score"])
    metric.reset()
    with pytest.raises(ValueError, match="uncertainty"):
        metric(y_pred=pred, y=label)


def test_bad_inputs_raise() -> None:
    pred = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match=re.escape("got (1, 3, 4, 4) and (1, 2, 4, 4)")):
        compute_qubrats_score(pred, torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=re.escape("uncertainty must be (1, 3, 4, 4) or (1, 1, 4, 4)")):
        compute_qubrats_score(pred, pred, torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=re.escape("mask must be (1, 1, 4, 4)")):
        compute_qubrats_score(pred, pred, pred, mask=pred)
    with pytest.raises(ValueError, match="NaN"):
        compute_qubrats_score(pred, pred, torch.full_like(pred, float("nan")))
    with pytest.raises(ValueError, match="low < high"):
        QUBraTSMetric(uncertainty_range=(0.5, 0.5))
    with pytest.raises(ValueError, match="num_steps"):
        compute_qubrats_score(pred, pred, pred, num_steps=0)
    with pytest.raises(ValueError, match="one item per item"):
        QUBraTSMetric()(y_pred=list(pred), y=list(pred), uncertainty=[pred[0]] * 2)
