"""The retinal-vessel bundle end to end: patch training, sliding-window evaluation inside the FOV, inference, checks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from monai_seg.data import load_datalist, make_demo
from monai_seg.networks import R2UNet
from tests.bundle_utils import check_retention_report, run_bundle
from tests.test_skin_bundle import check_bundle_exports

BUNDLE = "retina_vessel_segmentation"
CHANNELS = [4, 8, 16, 32, 64]
SIZE = (112, 96)  # (H, W) of the demo images
SMALL = {
    "num_workers": 0, "batch_size": 2, "patches_per_image": 2, "patch_size": [48, 48], "network_def#channels": CHANNELS
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Demo data (3 training images: 2 train + 1 val, 2 test images) and a 1-epoch training via `training`."""
    root = tmp_path_factory.mktemp("retina")
    data = make_demo("drive", root / "data", num_training=3, num_test=2, size=SIZE)
    dirs = {"dataset_dir": data, "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    run_bundle(BUNDLE, ["train.json"], run_id="training", epochs=1, val_fraction=0.34, **dirs, **SMALL)
    return root, dirs


def test_training_validates_whole_images_inside_the_fov(trained):
    root, _ = trained
    with open(root / "eval" / "validation" / "metrics_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["filename"].endswith("_training.tif")
    assert (root / "models" / "model.pt").is_file() and (root / "eval" / "validation" / "overlays.png").is_file()


def test_evaluate_reports_the_paper_metrics_inside_the_fov(tmp_path, trained):
    """The evaluation's per-image accuracy and Dice equal those of the inference masks, counted inside the FOV."""
    root, dirs = trained
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], **dirs, **SMALL)
    with open(root / "eval" / "metrics.csv") as f:
        metrics = {name: float(value) for name, value in csv.reader(f)}
    assert set(metrics) == {"val_dice", "val_auc", "val_accuracy", "val_sensitivity", "val_specificity", "val_f1",
                            "val_jaccard"}
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    with open(root / "eval" / "metrics_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    test = load_datalist("drive", root / "data", "test", validate=False)
    assert [r["filename"] for r in rows] == [d["image"] for d in test]
    assert np.mean([float(r["dice"]) for r in rows]) == pytest.approx(metrics["val_dice"], abs=1e-6)
    check_retention_report(root / "eval", len(rows))

    run_bundle(BUNDLE, ["inference.json"], dataset_dir=dirs["dataset_dir"], checkpoint=dirs["ckpt_dir"] + "/model.pt",
               output_dir=str(tmp_path), num_workers=0, patch_size=SMALL["patch_size"],
               **{"network_def#channels": CHANNELS})
    for row, item in zip(rows, test):
        pred = np.asarray(Image.open(tmp_path / "masks" / f"{item['id']}_test_vessels.png")) > 0
        assert pred.shape == SIZE
        label, fov = (np.asarray(Image.open(item[key]).convert("L")) > 0 for key in ("label", "fov"))
        assert float(row["accuracy"]) == pytest.approx((pred == label)[fov].mean(), abs=1e-6)
        dice = 2 * (pred & label)[fov].sum() / (pred[fov].sum() + label[fov].sum())
        assert float(row["dice"]) == pytest.approx(dice, abs=1e-6)


def test_run_entry_trains_the_dice_ce_variant(tmp_path, trained):
    _, dirs = trained
    run_bundle(BUNDLE, ["train.json", "dice_ce.json"], epochs=1, val_fraction=0.34,
               **{**dirs, "ckpt_dir": str(tmp_path)}, **SMALL)
    assert (tmp_path / "model.pt").is_file()


def test_metadata_network_and_export(tmp_path, trained):
    root, _ = trained
    check_bundle_exports(BUNDLE, R2UNet(2, 3, 2, channels=CHANNELS), str(root / "models" / "model.pt"), tmp_path,
                         (1, 3, 48, 32), n=2, **{"network_def#channels": CHANNELS})
