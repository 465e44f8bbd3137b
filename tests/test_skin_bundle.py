"""The skin-lesion bundle end to end through MONAI's bundle API: train, evaluate, infer, checks."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from monai_seg.cli import main
from monai_seg.data import load_datalist, make_demo
from monai_seg.networks import R2UNet
from tests.bundle_utils import BUNDLES, SCHEMA, check_retention_report, config_files, run_bundle
from tests.integration.monailabel_check import inference_parser

BUNDLE = "skin_lesion_segmentation"
CHANNELS = [4, 8, 16, 32, 64]
SMALL = {"num_workers": 0, "batch_size": 2, "spatial_size": [32, 32], "network_def#channels": CHANNELS}

pytestmark = pytest.mark.usefixtures("one_thread")


def check_bundle_exports(bundle: str, net: torch.nn.Module, checkpoint: str, tmp_path, input_shape, **override) -> None:
    """verify_metadata, verify_net_in_out and ckpt_export of a bundle; the TorchScript net matches ``net``
    (built with the same arguments as the bundle's ``network_def`` under ``override``) loaded from ``checkpoint``."""
    meta, inference = config_files(bundle, "metadata.json", "inference.json")
    verify_metadata(meta_file=meta, filepath=str(SCHEMA))
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=inference, device="cpu", **override)
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def", filepath=str(ts), ckpt_file=checkpoint, meta_file=meta, config_file=inference, **override
    )
    net.load_state_dict(torch.load(checkpoint, weights_only=True), strict=True)  # a plain state_dict
    x = torch.randn(input_shape)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(ts))(x), net.eval()(x), atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Demo data (4 train, 2 val, 3 test images) and a 1-epoch training run via the `training` entry."""
    root = tmp_path_factory.mktemp("skin")
    data = make_demo("isic", root / "data", num_train=4, num_val=2, num_test=3)
    dirs = {"dataset_dir": data, "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    run_bundle(BUNDLE, ["train.json"], run_id="training", epochs=1, **dirs, **SMALL)
    return root, dirs


def test_training_writes_checkpoint_report_and_figures(trained):
    root, _ = trained
    summary = json.loads((root / "eval" / "validation" / "metrics_summary.json").read_text())
    assert summary["num_images"] == 2
    for key in ("dice", "iou", "sensitivity", "specificity", "precision", "f1", "accuracy"):
        assert 0.0 <= summary[key] <= 1.0, key
    for png in ("training_curves.png", "validation/overlays.png"):
        assert Image.open(root / "eval" / png).size[0] > 100


def test_run_entry_trains_the_dice_ce_variant(tmp_path, trained):
    _, dirs = trained
    run_bundle(BUNDLE, ["train.json", "dice_ce.json"], epochs=1, **{**dirs, "ckpt_dir": str(tmp_path)}, **SMALL)
    assert (tmp_path / "model.pt").is_file()


def test_evaluate_scores_the_test_images_at_their_own_size(trained):
    root, dirs = trained
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], **dirs, **SMALL)
    with open(root / "eval" / "metrics_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    test = load_datalist("isic", root / "data", "test", validate=False)
    assert [r["filename"] for r in rows] == [d["image"] for d in test]
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    assert (root / "eval" / "overlays.png").is_file()
    cases = check_retention_report(root / "eval", len(rows))
    assert {c["case"] for c in cases} == {r["filename"] for r in rows}


def test_inference_writes_isic_masks(tmp_path, trained):
    root, dirs = trained
    run_bundle(BUNDLE, ["inference.json"], dataset_dir=dirs["dataset_dir"], checkpoint=dirs["ckpt_dir"] + "/model.pt",
               output_dir=str(tmp_path), num_workers=0, spatial_size=SMALL["spatial_size"],
               **{"network_def#channels": CHANNELS})
    for item in load_datalist("isic", root / "data", "test", labels="none", validate=False):
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{item['id']}_segmentation.png"))
        assert mask.shape == np.asarray(Image.open(item["image"])).shape[:2]  # the image's own size and orientation
        assert set(np.unique(mask)) <= {0, 255}


def test_metadata_network_and_export(tmp_path, trained):
    root, _ = trained
    net = R2UNet(2, 3, 2, channels=CHANNELS)
    check_bundle_exports(BUNDLE, net, str(root / "models" / "model.pt"), tmp_path, (1, 3, 32, 48),
                         **{"network_def#channels": CHANNELS})


def test_calibrate_then_evaluate_and_infer_with_the_temperature(tmp_path, trained):
    """`monai-seg calibrate` writes calibration.json beside the model; evaluation applies it and reports ECE and
    Brier score before and after with a reliability diagram; inference (as MONAI Label) applies it; a retrained
    model is refused."""
    _, dirs = trained
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    shutil.copyfile(dirs["ckpt_dir"] + "/model.pt", ckpt / "model.pt")
    settings = [f"{k}={json.dumps(v)}" for k, v in SMALL.items()]
    main(["calibrate", BUNDLE, "--dataset_dir", dirs["dataset_dir"], "--ckpt_dir", str(ckpt), "--max_pixels", "2000",
          "--set", *settings])
    record = json.loads((ckpt / "calibration.json").read_text())
    assert len(record["temperature"]) == 1 and record["channels"] == ["background", "lesion"]
    assert record["num_pixels"] == 2000 and record["after"]["nll"][0] <= record["before"]["nll"][0]
    out = tmp_path / "eval"
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], **{**dirs, "ckpt_dir": str(ckpt), "output_dir": str(out)},
               **SMALL)
    calibration = json.loads((out / "metrics_summary.json").read_text())["calibration"]
    assert calibration["calibrated"] and calibration["temperature"] == record["temperature"]
    for key in ("ece_before", "ece_after", "brier_before", "brier_after"):
        assert 0.0 <= calibration[key] <= 1.0, key
    assert calibration["ece_before"] != calibration["ece_after"]
    assert Image.open(out / "reliability.png").size[0] > 100
    inferer = inference_parser(BUNDLES / BUNDLE, checkpoint=str(ckpt / "model.pt")).get_parsed_content("inferer")
    assert inferer.temperature == record["temperature"]
    torch.save(R2UNet(2, 3, 2, channels=CHANNELS).state_dict(), ckpt / "model.pt")  # retrained
    with pytest.raises(RuntimeError) as error:  # MONAI's parser raises it from the ValueError
        inference_parser(BUNDLES / BUNDLE, checkpoint=str(ckpt / "model.pt")).get_parsed_content("inferer")
    assert "was fitted for another model" in str(error.value.__cause__)
