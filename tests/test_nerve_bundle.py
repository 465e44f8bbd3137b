"""The nerve bundle end to end through MONAI's bundle API: train, evaluate, infer, submission, checks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from monai_seg.data import make_demo, rle_decode
from tests.bundle_utils import SCHEMA, bundle_network, check_retention_report, config_files, run_bundle

BUNDLE = "nerve_ultrasound_segmentation"
SMALL = {"num_workers": 0, "batch_size": 4, "network_def#channels": [16, 32, 64, 128, 256]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Demo data (4 subjects x 4 images, 5 test images) and a 2-epoch training run via the `training` entry."""
    root = tmp_path_factory.mktemp("nerve")
    data = make_demo("nerve", str(root / "data"), num_subjects=4, images_per_subject=4, num_test=5)
    dirs = {"dataset_dir": data, "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    run_bundle(BUNDLE, ["train.json"], run_id="training", epochs=2, **dirs, **SMALL)
    return root, dirs


def test_training_writes_checkpoint_metrics_and_figures(trained):
    root, _ = trained
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    net = bundle_network(BUNDLE)
    net.load_state_dict(state, strict=True)  # a plain state_dict, as MONAI Label loads it
    summary = json.loads((root / "eval" / "validation" / "metrics_summary.json").read_text())
    assert summary["num_images"] == 4  # one validation subject of four images
    for key in ("dice", "iou", "sensitivity", "specificity", "precision", "f1", "accuracy", "presence_accuracy"):
        assert 0.0 <= summary[key] <= 1.0, key
    for png in ("training_curves.png", "validation/overlays.png"):
        assert Image.open(root / "eval" / png).size[0] > 100


def test_run_entry_trains_too(tmp_path, trained):
    _, dirs = trained
    run_bundle(BUNDLE, ["train.json"], epochs=1, **{**dirs, "ckpt_dir": str(tmp_path)}, **SMALL)
    assert (tmp_path / "model.pt").is_file()


def test_evaluate_scores_at_original_resolution(trained):
    """With Monte-Carlo presence samples: the entropy retention curve and the presence-referral curve too."""
    root, dirs = trained
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], presence_samples=4, **dirs, **SMALL)
    with open(root / "eval" / "metrics_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["filename"].endswith(".tif") for r in rows)
    assert all(0.0 <= float(r["dice"]) <= 1.0 and 0.0 <= float(r["presence_prob"]) <= 1.0 for r in rows)
    assert all(float(r["presence_std"]) > 0 for r in rows)  # the presence head's dropout samples
    assert (root / "eval" / "overlays.png").is_file()
    for prefix in ("", "presence_"):
        check_retention_report(root / "eval", len(rows), prefix)


def test_inference_writes_masks_and_a_matching_submission(tmp_path, trained):
    root, dirs = trained
    run_bundle(BUNDLE, ["inference.json"], dataset_dir=dirs["dataset_dir"],
               checkpoint=str(root / "models" / "model.pt"), output_dir=str(tmp_path), num_workers=0,
               presence_threshold=0.0, min_pixels=0, presence_samples=2,
               **{"network_def#channels": SMALL["network_def#channels"]})
    with open(tmp_path / "submission.csv") as f:
        reader = csv.reader(f)
        assert next(reader) == ["img", "pixels"]
        rows = list(reader)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    for img, rle in rows:
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{img}_mask.png"))
        assert mask.shape == (420, 580)  # the TIF's own size and orientation
        np.testing.assert_array_equal(rle_decode(rle, (420, 580)), mask > 0)
    with open(tmp_path / "referrals.csv") as f:  # the side report of the Monte-Carlo presence
        referrals = list(csv.DictReader(f))
    assert [int(r["img"]) for r in referrals] == [1, 2, 3, 4, 5]
    assert all(r["referred"] in ("0", "1") and float(r["presence_std"]) >= 0 for r in referrals)


def test_metadata_and_network_checks(tmp_path, trained):
    root, _ = trained
    meta = config_files(BUNDLE, "metadata.json")[0]
    verify_metadata(meta_file=meta, filepath=str(SCHEMA))
    inference = config_files(BUNDLE, "inference.json")[0]
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=inference, device="cpu")
    ts = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=meta, config_file=inference, **{"network_def#channels": SMALL["network_def#channels"]})
    exported = torch.jit.load(str(ts))
    net = bundle_network(BUNDLE).eval()
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    x = torch.randn(2, 1, 112, 80)
    with torch.no_grad():
        assert torch.allclose(exported(x), net(x), atol=1e-5)


@pytest.mark.parametrize("variant", ["unet.json", "r2unet.json", "unetplusplus.json", "attention_unet.json"])
def test_net_variants_train(tmp_path, trained, variant):
    _, dirs = trained
    run_bundle(BUNDLE, ["train.json", variant], run_id="training", epochs=1, num_workers=0, batch_size=4,
               dataset_dir=dirs["dataset_dir"], ckpt_dir=str(tmp_path / "models"), output_dir=str(tmp_path / "eval"))
    assert (tmp_path / "models" / "model.pt").is_file()
    summary = json.loads((tmp_path / "eval" / "validation" / "metrics_summary.json").read_text())
    assert "presence_accuracy" not in summary  # single-head nets: no presence head, no gating

