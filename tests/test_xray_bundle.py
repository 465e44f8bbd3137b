"""The X-ray multi-class bundle: 16-bit round trip, clipping and plateau schedule, evaluation, inference."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.engines import IterationEvents
from monai.networks.nets import BasicUNet
from PIL import Image

from monai_seg.data import load_datalist, make_demo
from tests.bundle_utils import check_retention_report, config_files, run_bundle
from tests.test_skin_bundle import check_bundle_exports

BUNDLE = "xray_multiclass_segmentation"
FEATURES = [4, 4, 8, 16, 32, 4]
SIZE = (40, 32)  # (H, W) of the demo images
SMALL = {"num_workers": 0, "batch_size": 2, "spatial_size": [32, 32], "network_def#features": FEATURES}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Demo data (4 train, 2 val, 2 test 16-bit PNGs) and a 1-epoch training via the `training` entry."""
    root = tmp_path_factory.mktemp("xray")
    data = make_demo("xray", root / "data", num_train=4, num_val=2, num_test=2, size=SIZE)
    dirs = {"dataset_dir": data, "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    run_bundle(BUNDLE, ["train.json"], run_id="training", epochs=1, **dirs, **SMALL)
    return root, dirs


def parse(names, **override) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(config_files(BUNDLE, *names))
    parser.update(override)
    return parser


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16bit_round_trip(tmp_path, suffix):
    """16-bit values survive writing and the bundle's reader exactly; the window maps 0..65535 to 0..1."""
    values = np.array([[0, 1, 255, 256], [300, 4095, 40000, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / f"x.{suffix}")
    Image.fromarray(np.array([[0, 1, 2, 2], [1, 0, 2, 1]], np.uint8)).save(tmp_path / "m.png")
    load, window = parse(["train.json"]).get_parsed_content("load_transforms")[:2]
    item = load({"image": str(tmp_path / f"x.{suffix}"), "label": str(tmp_path / "m.png")})
    np.testing.assert_array_equal(item["image"][0].numpy().T, values)  # MONAI's PIL layout is (W, H)
    np.testing.assert_array_equal(item["label"][0].numpy().T, [[0, 1, 2, 2], [1, 0, 2, 1]])
    np.testing.assert_allclose(window(item)["image"][0].numpy().T, values / 65535.0, rtol=1e-6)


def test_noise_experiment_adds_16bit_gaussian_noise(tmp_path):
    image = np.full((64, 64), 30000, np.uint16)
    Image.fromarray(image).save(tmp_path / "x.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "m.png")
    parser = parse(["train.json", "evaluate.json"], noise_std=5000.0)
    load, noise = parser.get_parsed_content("validate#eval_transforms")[:2]
    noisy = noise(load({"image": str(tmp_path / "x.png"), "label": str(tmp_path / "m.png")}))["image"]
    assert float((noisy - 30000).std()) == pytest.approx(5000, rel=0.1)
    clean = parse(["train.json", "evaluate.json"]).get_parsed_content("validate#eval_transforms")[1]
    assert clean.prob == 0.0  # off by default


def test_training_clips_gradients_and_steps_the_plateau_schedule(tmp_path, trained):
    _, dirs = trained
    parser = parse(["train.json"], epochs=1, max_grad_norm=1e-3, **{**dirs, "ckpt_dir": str(tmp_path)}, **SMALL)
    trainer, network = parser.get_parsed_content("train#trainer"), parser.get_parsed_content("network")
    norms = []
    parser.get_parsed_content("run#0")  # registers the clipping, as `run` does
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, lambda _: norms.append(
        float(torch.norm(torch.stack([p.grad.norm() for p in network.parameters() if p.grad is not None])))))
    parser.get_parsed_content("run")  # the rest of `run`: attaches the resume handlers and trains
    assert len(norms) == 2 and max(norms) <= 1e-3 * (1 + 1e-4)
    scheduler = parser.get_parsed_content("lr_scheduler")
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and scheduler.patience == 5
    assert scheduler.last_epoch == 1  # stepped once with the validation Dice


def test_evaluate_writes_per_class_dice(trained):
    root, dirs = trained
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], **dirs, **SMALL)
    with open(root / "eval" / "val_class_dice_raw.csv") as f:
        rows = list(csv.DictReader(f))
    val = load_datalist("xray", root / "data", "val", validate=False)
    assert [r["filename"] for r in rows] == [d["image"] for d in val]
    assert all(0.0 <= float(r[f"class{c}"]) <= 1.0 for r in rows for c in range(3))
    with open(root / "eval" / "metrics.csv") as f:
        assert next(csv.reader(f))[0] == "val_mean_dice"
    assert (root / "eval" / "val_class_dice_summary.csv").is_file() and (root / "eval" / "overlays.png").is_file()
    with open(root / "eval" / "metrics_per_image.csv") as f:
        per_image = list(csv.DictReader(f))
    # the report's Dice is the mean over the foreground classes of MetricsSaver's per-class Dice
    for row, mine in zip(rows, per_image):
        assert float(mine["dice"]) == pytest.approx((float(row["class1"]) + float(row["class2"])) / 2, abs=1e-5)
    check_retention_report(root / "eval", len(rows))


def test_inference_writes_class_maps(tmp_path, trained):
    root, dirs = trained
    run_bundle(BUNDLE, ["inference.json"], dataset_dir=dirs["dataset_dir"], checkpoint=dirs["ckpt_dir"] + "/model.pt",
               output_dir=str(tmp_path), num_workers=0, spatial_size=SMALL["spatial_size"],
               **{"network_def#features": FEATURES})
    for item in load_datalist("xray", root / "data", "test", validate=False):
        classes = np.asarray(Image.open(tmp_path / "masks" / f"{item['id']}_classes.png"))
        assert classes.shape == SIZE and set(np.unique(classes)) <= {0, 1, 2}


def test_run_entry_trains(tmp_path, trained):
    _, dirs = trained
    run_bundle(BUNDLE, ["train.json"], epochs=1, **{**dirs, "ckpt_dir": str(tmp_path)}, **SMALL)
    assert (tmp_path / "model.pt").is_file()


def test_metadata_network_and_export(tmp_path, trained):
    root, _ = trained
    net = BasicUNet(2, 1, 3, features=FEATURES, norm="batch", upsample="deconv")
    check_bundle_exports(BUNDLE, net, str(root / "models" / "model.pt"), tmp_path, (1, 1, 32, 48),
                         **{"network_def#features": FEATURES})
