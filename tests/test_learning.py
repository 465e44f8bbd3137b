"""Short trainings on tiny generated data LEARN: each bundle's Dice beats the trivial predictions by a clear margin.

Each test writes a small demo dataset, trains the bundle for a few epochs (``train.json``: its own
loss, net type, optimiser, transforms and best-checkpoint selection; a narrow net, small images
and a learning rate that learns within the budget) and evaluates the best checkpoint on held-out
images with the bundle's evaluation config. The foreground Dice that evaluation writes must beat,
by :data:`MARGIN`, the better of the two trivial predictions, all background and all foreground,
scored here on the same labels and pixels with the bundles' convention (an empty mask predicted
empty scores 1). A change that stops the bundles from learning (labels, transforms, loss,
optimiser, checkpointing, evaluation) leaves the Dice near a trivial score and fails these tests.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from monai_seg.data import XRAY_CLASSES, load_datalist, load_split, make_demo
from tests.bundle_utils import run_bundle

MARGIN = 0.25
"""How far the evaluated Dice must exceed the better trivial prediction's."""

SEED = 0
"""Training seed; the margins were checked with several seeds."""

COMMON = {"seed": SEED, "num_workers": 0, "is_not_rank0": True}
"""``is_not_rank0`` switches off what rank > 0 skips (figures, TensorBoard, logs): most of the run time otherwise."""

NERVE_MARGIN = 0.2
"""How far the nerve bundle's Kaggle score must exceed the all-empty submission's (0.5 on its demo data)."""

NERVE_DATA = {"num_subjects": 6, "images_per_subject": 8, "num_test": 0, "size": (210, 290)}
NERVE_SETTINGS = {"epochs": 30, "batch_size": 4, "spatial_size": [64, 48],
                  "network_def#channels": [16, 16, 32, 32, 64]}
"""The bundle's defaults but the size: 6 subjects (1 held out), 300 steps of 4 images at 64x48.
Seeds 0, 1, 2 scored 0.736, 0.764, 0.963 (presence AUROC 1.0, 0.75, 1.0) on the 8 held-out images."""

pytestmark = pytest.mark.usefixtures("one_thread")


def train(bundle: str, root: Path, dataset_dir: str, **override) -> dict[str, str]:
    """Train ``bundle`` on ``dataset_dir`` with ``train.json``; returns the folder overrides it ran with."""
    dirs = {"dataset_dir": dataset_dir, "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    run_bundle(bundle, ["train.json"], **dirs, **COMMON, **override)
    return dirs


def read_column(csv_file: Path, column: str) -> list[float]:
    """One column of a metrics CSV the bundle wrote, as floats."""
    with open(csv_file) as f:
        return [float(row[column]) for row in csv.DictReader(f)]


def trivial_dice(masks: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean Dice over images of predicting all background and all foreground.

    An empty mask predicted empty scores 1, as the bundles' reports count it.

    Args:
        masks: boolean ground truth of each image, holding only the scored pixels.
    """
    return {
        "all background": float(np.mean([not mask.any() for mask in masks])),
        "all foreground": float(np.mean([2 * mask.sum() / (mask.sum() + mask.size) for mask in masks])),
    }


def assert_beats_trivial(dice: float, masks: Sequence[np.ndarray], what: str) -> None:
    trivial = trivial_dice(masks)
    assert dice >= max(trivial.values()) + MARGIN, f"{what}: Dice {dice:.3f}, trivial predictions {trivial}"


def test_xray_learns_soft_tissue_and_bone(tmp_path):
    """Per-class Dice on held-out images (``eval_section`` test); 10x the bundle's learning rate, which leaves
    too little room over the all-soft-tissue prediction after so few epochs."""
    bundle = "xray_multiclass_segmentation"
    data = make_demo("xray", tmp_path / "data", num_train=8, num_val=2, num_test=4, size=(40, 32))
    settings = {
        "epochs": 30, "learning_rate": 1e-3, "batch_size": 4, "spatial_size": [32, 32],
        "network_def#features": [16, 16, 32, 64, 128, 16],
    }
    dirs = train(bundle, tmp_path, data, **settings)
    run_bundle(bundle, ["train.json", "evaluate.json"], eval_section="test", **dirs, **COMMON, **settings)
    labels = [np.asarray(Image.open(item["label"])) for item in load_datalist("xray", data, "test", validate=False)]
    for value in (1, 2):
        dice = np.nanmean(read_column(tmp_path / "eval" / "val_class_dice_raw.csv", f"class{value}"))
        assert_beats_trivial(dice, [label == value for label in labels], XRAY_CLASSES[value])


def test_skin_lesion_learns(tmp_path):
    """Dice at each test image's own size; the bundle's learning rate (1e-3) is too slow for some seeds here."""
    bundle = "skin_lesion_segmentation"
    data = make_demo("isic", tmp_path / "data", num_train=8, num_val=2, num_test=4)
    settings = {"epochs": 20, "learning_rate": 1e-2, "batch_size": 4, "spatial_size": [32, 32],
                "network_def#channels": [4, 8, 16, 32, 64]}
    dirs = train(bundle, tmp_path, data, **settings)
    run_bundle(bundle, ["train.json", "evaluate.json"], **dirs, **COMMON, **settings)
    dice = np.mean(read_column(tmp_path / "eval" / "metrics_per_image.csv", "dice"))
    masks = [np.asarray(Image.open(item["label"])) > 0 for item in load_datalist("isic", data, "test", validate=False)]
    assert_beats_trivial(dice, masks, "lesion")


def test_retina_learns_vessels_inside_the_fov(tmp_path):
    """Sliding-window Dice inside the FOV. Images of 160 pixels: the demo's vessel calibres scale with the image
    size, smaller ones hold hardly any vessels; one image (4 patches) per step and 3x the bundle's learning rate,
    so that the few epochs make enough progress."""
    bundle = "retina_vessel_segmentation"
    data = make_demo("drive", tmp_path / "data", num_training=5, num_test=2, size=(160, 160))
    settings = {
        "epochs": 16, "val_interval": 2, "learning_rate": 3e-3, "val_fraction": 0.2, "batch_size": 1,
        "patches_per_image": 4, "patch_size": [64, 64], "network_def#channels": [8, 16, 32, 64, 128],
    }
    dirs = train(bundle, tmp_path, data, **settings)
    run_bundle(bundle, ["train.json", "evaluate.json"], **dirs, **COMMON, **settings)
    dice = np.mean(read_column(tmp_path / "eval" / "metrics_per_image.csv", "dice"))
    masks = []
    for item in load_datalist("drive", data, "test", validate=False):
        vessels, fov = (np.asarray(Image.open(item[key]).convert("L")) > 0 for key in ("label", "fov"))
        masks.append(vessels[fov])  # the bundle scores the pixels inside the field of view only
    assert_beats_trivial(dice, masks, "vessels")


def test_brats_learns_the_whole_tumour(tmp_path):
    """Volume Dice of the Monte-Carlo evaluation (``train.json`` + ``evaluate.json``) on the held-out test cases."""
    bundle = "brats_mri_uncertainty"
    data = make_demo("brats", str(tmp_path / "data"), num_cases=6, shape=(48, 48, 16))
    split = {"val_fraction": 0.2, "test_fraction": 0.34}  # 3 training, 1 validation, 2 test cases
    net = {"network_def#channels": [8, 16, 32], "network_def#blocks": [1, 1, 1], "spatial_size": [32, 32]}
    dirs = train(bundle, tmp_path, data, epochs=15, batch_size=16, **split, **net)  # the bundle's learning rate
    run_bundle(bundle, ["train.json", "evaluate.json"], **{**dirs, "output_dir": str(tmp_path / "out")}, **COMMON,
               num_samples=3, sample_batch=3, **split, **net)
    dice = np.mean(read_column(tmp_path / "out" / "metrics_per_case.csv", "dice_WT"))
    test = load_split("brats", data, seed=SEED, validate=False, **split)["test"]
    masks = [nib.load(item["label"]).get_fdata() > 0 for item in test]  # the whole tumour: any tumour label
    assert_beats_trivial(dice, masks, "whole tumour")


def test_nerve_learns_to_find_nerves(tmp_path):
    """Kaggle score of the gated masks at the original size, and the presence head's AUROC, on held-out subjects.

    Half the images show no nerve, so predicting nothing already scores 0.5: the score must clear
    that by :data:`NERVE_MARGIN` (the per-image Dice margin of the other bundles does not apply to a
    score that gives an empty/empty pair a 1)."""
    bundle = "nerve_ultrasound_segmentation"
    data = make_demo("nerve", str(tmp_path / "data"), **NERVE_DATA)
    dirs = train(bundle, tmp_path, data, **NERVE_SETTINGS)
    run_bundle(bundle, ["train.json", "evaluate.json"], **dirs, **COMMON, **NERVE_SETTINGS)
    summary = json.loads((tmp_path / "eval" / "metrics_summary.json").read_text())
    masks = [tifffile.imread(item["label"]) > 0 for item in load_split("nerve", data, seed=SEED, validate=False)["val"]]
    trivial = trivial_dice(masks)
    assert summary["num_images"] == len(masks) and summary["num_empty"] == sum(not m.any() for m in masks)
    assert summary["dice"] >= max(trivial.values()) + NERVE_MARGIN, f"Kaggle score {summary['dice']:.3f}, {trivial}"
    assert summary["presence_auroc"] >= 0.7, summary
