"""Case triage of the 2D bundles: the entropy of a deterministic prediction, the per-image triage score and
retention curve of SegmentationReport, and the nerve bundle's Monte-Carlo presence referral (gating flags,
submission side report, presence retention curve)."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch
from monai.data import MetaTensor
from monai.handlers import from_engine

from monai_seg.handlers import SegmentationReport, SubmissionWriter
from monai_seg.inferers import CalibratedInferer, MCDropoutInferer
from monai_seg.metrics import compute_interval_referral_score, compute_triage_score
from monai_seg.networks import EvalOptimized, TemperatureScaled, TwoHeadUNet
from monai_seg.transforms import PresenceGatingd, ProbabilityEntropyd

SIZE = (12, 10)


def _read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _square(value: float, background: float, box: tuple[slice, slice] = (slice(3, 7), slice(3, 7))) -> torch.Tensor:
    """A (1, 12, 10) probability map: ``value`` inside ``box``, ``background`` elsewhere."""
    p = torch.full((1, *SIZE), background)
    p[(0, *box)] = value
    return p


def test_probability_entropy():
    p = torch.stack([torch.full(SIZE, 0.5), torch.full(SIZE, 1.0)])  # a segmentation and a presence channel
    d = ProbabilityEntropyd("pred", "sigmoid", channels=1)({"pred": p})
    assert d["pred_entropy"].shape == (1, *SIZE) and torch.allclose(d["pred_entropy"], torch.tensor(math.log(2)))
    softmax = ProbabilityEntropyd("pred", "softmax")({"pred": torch.full((3, *SIZE), 1 / 3)})["pred_entropy"]
    assert softmax.shape == (1, *SIZE) and torch.allclose(softmax, torch.tensor(math.log(3)))
    with pytest.raises(ValueError, match="activation"):
        ProbabilityEntropyd("pred", "relu")


def test_per_image_score_ranks_uncertain_images_first():
    """Confident < uncertain; an empty prediction is scored over the whole image: a confident empty map scores
    low, a diffuse doubt (p = 0.3 over a region that stays below the threshold) higher."""
    maps = {
        "confident": _square(0.99, 0.01),
        "uncertain": _square(0.6, 0.01),
        "empty, confident": _square(0.001, 0.001),
        "empty, doubtful": _square(0.3, 0.01),
    }
    scores = {}
    for name, p in maps.items():
        entropy = ProbabilityEntropyd("pred", "sigmoid")({"pred": p})["pred_entropy"]
        scores[name] = compute_triage_score(entropy[None], (p > 0.5)[None], band=1).item()
    assert scores["uncertain"] > scores["empty, doubtful"] > scores["confident"] > scores["empty, confident"]


def test_interval_referral_score():
    score = compute_interval_referral_score(torch.tensor([0.9, 0.55, 0.5, 0.2]), torch.tensor([0.1, 0.1, 0.0, 0.0]))
    assert score.tolist() == pytest.approx([0.25, 2.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="negative"):
        compute_interval_referral_score(0.5, -0.1)


@pytest.mark.parametrize("presence, std, referred", [(0.6, 0.06, 1.0), (0.4, 0.06, 1.0), (0.6, 0.04, 0.0),
                                                     (0.1, 0.3, 1.0), (0.1, 0.15, 0.0), (0.3, 0.0, 0.0)])
def test_gating_refers_when_the_interval_straddles_the_threshold(presence, std, referred):
    """refer_k = 2: referred exactly when [presence - 2 std, presence + 2 std] contains 0.5; the mask is gated
    as without the referral."""
    seg = _square(0.9, 0.1)
    data = {"pred": torch.cat([seg, torch.full((1, *SIZE), presence)]),
            "pred_std": torch.cat([torch.zeros(1, *SIZE), torch.full((1, *SIZE), std)])}
    out = PresenceGatingd("pred", presence_key="presence", std_key="pred_std", refer_k=2.0)(data)
    assert out["presence_referred"].item() == referred
    assert out["presence_std"].item() == pytest.approx(std)
    plain = PresenceGatingd("pred", presence_key="presence")({"pred": data["pred"]})
    assert torch.equal(out["pred"], plain["pred"]) and "presence_referred" not in plain
    with pytest.raises(ValueError, match="presence_key"):
        PresenceGatingd("pred", std_key="pred_std")


@pytest.mark.parametrize("location, sampled", [("heads", True), ("decoder", False)])
def test_presence_std_of_mc_dropout(location, sampled):
    """Dropout before the presence head ("heads") gives a presence std > 0; with dropout only in the decoder the
    presence head is deterministic and its std is 0 while the segmentation's is not."""
    torch.manual_seed(0)
    net = TwoHeadUNet(2, 1, 1, channels=(16, 32), dropout=0.5, dropout_location=location).eval()
    x = torch.randn(2, 1, 16, 16)
    out = MCDropoutInferer(8, maps=("mean", "std"), sample_batch=8, seed=0)(x, net)
    seg_std, presence_std = out[:, 2], out[:, 3]  # [seg mean, presence mean, seg std, presence std]
    assert (presence_std > 0).all() if sampled else (presence_std == 0).all()
    assert seg_std.max() > 0
    # the inference bundle's EvalOptimized wrapper is sampled through the net it wraps, with its prefix split
    inferer = MCDropoutInferer(8, maps=("mean", "std"), sample_batch=8, seed=0)
    assert torch.allclose(inferer(x, EvalOptimized(net)), out, atol=1e-6)
    assert inferer.prefix_split(net) is not None
    # calibrated (the inference bundle with a calibration file): the same, with the temperatures applied
    calibrated = CalibratedInferer(MCDropoutInferer(8, maps=("mean", "std"), sample_batch=8, seed=0), [2.0, 0.5])
    expected = MCDropoutInferer(8, maps=("mean", "std"), sample_batch=8, seed=0)(x, TemperatureScaled(net, [2.0, 0.5]))
    assert torch.allclose(calibrated(x, EvalOptimized(net)), expected, atol=1e-6)


def test_submission_side_report_lists_the_referred_images(tmp_path):
    writer = SubmissionWriter(str(tmp_path / "submission.csv"), referral_filename=str(tmp_path / "referrals.csv"))
    items = [
        {"pred": MetaTensor(torch.zeros(1, 4, 3), meta={"filename_or_obj": f"test/{img}.tif"}),
         "presence": torch.tensor([p]), "presence_std": torch.tensor([s]), "presence_referred": torch.tensor([r])}
        for img, p, s, r in ((12, 0.55, 0.1, 1.0), (3, 0.9, 0.01, 0.0), (7, 0.45, 0.2, 1.0))
    ]
    writer.reset()
    writer(SimpleNamespace(state=SimpleNamespace(output=items)))
    writer.write()
    rows = _read_csv(tmp_path / "referrals.csv")
    assert [r["img"] for r in rows] == ["3", "7", "12"]  # every image, sorted by id
    assert [r["img"] for r in rows if r["referred"] == "1"] == ["7", "12"]
    assert float(rows[1]["presence"]) == pytest.approx(0.45) and float(rows[1]["presence_std"]) == pytest.approx(0.2)
    assert [r["img"] for r in _read_csv(tmp_path / "submission.csv")] == ["3", "7", "12"]


def test_segmentation_report_writes_both_retention_curves(tmp_path):
    """Three images: confident and right, uncertain and partly wrong, empty and right. The uncertain one is
    reviewed first by both scores, and both curves beat random referral."""
    label = (_square(1.0, 0.0) > 0).float()
    half = _square(0.6, 0.01, (slice(3, 7), slice(3, 5)))  # finds half the structure, at p = 0.6
    images = [  # (probabilities, label, presence, presence std)
        (_square(0.99, 0.01), label, 0.95, 0.01),
        (half, label, 0.55, 0.1),
        (_square(0.01, 0.01), torch.zeros_like(label), 0.05, 0.01),
    ]
    entropy = ProbabilityEntropyd("pred", "sigmoid")
    output = [
        {"pred": (p > 0.5).float(), "label": y, "pred_entropy": entropy({"pred": p})["pred_entropy"],
         "presence": torch.tensor([c]), "presence_std": torch.tensor([s])}
        for p, y, c, s in images
    ]
    batch = [{"image": MetaTensor(torch.zeros(1, *SIZE), meta={"filename_or_obj": f"{i}.tif"})} for i in range(3)]
    report = SegmentationReport(
        str(tmp_path), presence_transform=from_engine("presence"), band=1,
        triage_transform=from_engine(["pred", "pred_entropy"]), presence_std_transform=from_engine("presence_std"),
    )
    engine = SimpleNamespace(state=SimpleNamespace(batch=batch, output=output))
    report._started(engine)
    report(engine)
    report._finalize(engine)

    rows = _read_csv(tmp_path / "metrics_per_image.csv")
    assert [float(r["dice"]) for r in rows] == pytest.approx([1.0, 2 / 3, 1.0])
    assert float(rows[1]["presence_referral_score"]) == pytest.approx(2.0)
    for prefix in ("", "presence_"):
        cases = _read_csv(tmp_path / f"{prefix}triage_cases.csv")
        assert cases[0]["case"] == "1.tif"
        scores = [float(c["score"]) for c in cases]
        assert scores == sorted(scores, reverse=True)
        assert (tmp_path / f"{prefix}retention_curve.png").is_file()
    summary = json.loads((tmp_path / "metrics_summary.json").read_text())
    for prefix in ("", "presence_"):
        assert summary[f"{prefix}retention_auc"] == pytest.approx(summary[f"{prefix}retention_oracle_auc"])
        assert summary[f"{prefix}retention_auc"] > summary[f"{prefix}retention_random_auc"]
    with pytest.raises(ValueError, match="presence_transform"):
        SegmentationReport(str(tmp_path), presence_std_transform=from_engine("presence_std"))
