"""The BraTS uncertainty bundle end to end through MONAI's bundle API: train, MC-dropout inference with
NIfTI maps on the input's grid, evaluation report, variants, MONAI Label workflow and bundle checks."""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from monai_seg.data import load_datalist, make_demo
from monai_seg.metrics import QUBRATS_METRICS, VOLUME_METRICS, compute_volume_metrics
from monai_seg.networks import ResUNet
from tests.bundle_utils import BUNDLES, SCHEMA, config_files, run_bundle

BUNDLE = "brats_mri_uncertainty"
NET = {"network_def#channels": [8, 16, 32], "network_def#blocks": [1, 1, 1]}
SMALL = {"num_workers": 0, "batch_size": 16, "spatial_size": [32, 32], **NET}
INFER = {"num_workers": 0, "spatial_size": [32, 32], "num_samples": 3, "sample_batch": 3, **NET}
FAST_INFER = {**INFER, "inferer#inner#prefix_sampling": False}  # the deterministic-prefix split is tested once
FAST_EVAL = {**INFER, "validate#inferer#inner#prefix_sampling": False}
MAPS = ("seg", "prob", "std", "entropy", "mutual_info")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three demo cases (1 train, 1 val, 1 test) and a 2-epoch training run via the `training` entry."""
    root = tmp_path_factory.mktemp("brats_bundle")
    data = make_demo("brats", str(root / "data"), num_cases=3, shape=(48, 48, 16))
    dirs = {"dataset_dir": data, "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    run_bundle(BUNDLE, ["train.json"], run_id="training", epochs=2, **dirs, **SMALL)
    return root, dirs


@pytest.fixture(scope="module")
def inferred(trained, tmp_path_factory):
    """Monte-Carlo inference over all demo cases via the default `run` entry."""
    root, dirs = trained
    out = tmp_path_factory.mktemp("brats_outputs")
    run_bundle(BUNDLE, ["inference.json"], dataset_dir=dirs["dataset_dir"],
               checkpoint=str(root / "models" / "model.pt"), output_dir=str(out), **INFER)
    return out, load_datalist("brats", dirs["dataset_dir"], validate=False)


def test_training_writes_a_plain_state_dict_and_curves(trained):
    root, _ = trained
    net = ResUNet(2, 4, 1, channels=(8, 16, 32), blocks=(1, 1, 1))
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True), strict=True)
    assert Image.open(root / "eval" / "training_curves.png").size[0] > 100


def test_inference_maps_have_the_input_geometry(inferred):
    out, datalist = inferred
    for item in datalist:
        flair = nib.load(item["image"][0])
        for name in MAPS:
            image = nib.load(out / f"{item['case']}_{name}.nii.gz")
            assert image.shape == flair.shape, name
            np.testing.assert_allclose(image.affine, flair.affine, atol=1e-5)
        assert Image.open(out / f"{item['case']}_uncertainty.png").size[0] > 200


def test_inference_map_value_ranges(inferred):
    out, datalist = inferred
    case = datalist[0]["case"]
    maps = {name: nib.load(out / f"{case}_{name}.nii.gz").get_fdata() for name in MAPS}
    assert set(np.unique(maps["seg"])) <= {0, 1}
    np.testing.assert_array_equal(maps["seg"], maps["prob"] > 0.5)
    assert 0 <= maps["prob"].min() and maps["prob"].max() <= 1
    assert 0 <= maps["std"].min() and maps["std"].max() <= 0.5
    assert 0 <= maps["mutual_info"].min() and (maps["mutual_info"] <= maps["entropy"] + 1e-6).all()
    assert maps["entropy"].max() <= math.log(2)
    assert maps["std"].max() > 0  # dropout was on



def report_columns(regions: tuple[str, ...]) -> list[str]:
    """The columns of the BraTS report after ``case``: volume metrics, QU-BraTS of three maps, triage score."""
    qubrats = [f"qubrats_{m}_{name}_{r}" for name in ("std", "entropy", "mutual_info") for m in QUBRATS_METRICS
               for r in regions]
    return [f"{m}_{r}" for m in VOLUME_METRICS for r in regions] + qubrats + ["triage_score"]

def test_evaluate_writes_a_per_case_report(trained, tmp_path):
    _, dirs = trained
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], **{**dirs, "output_dir": str(tmp_path)}, **FAST_EVAL)
    with open(tmp_path / "metrics_per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["case"].startswith("BraTS2021_")  # the one held-out test case
    assert list(rows[0]) == ["case", *report_columns(("WT",))]
    summary = json.loads((tmp_path / "metrics_summary.json").read_text())
    assert summary["num_cases"] == 1 and summary["uncertainty"] == "pred_entropy"
    for name in ("dice_WT", "sensitivity_WT", "specificity_WT", "ece_WT", "triage_score", "retention_auc"):
        assert 0 <= summary[name] <= 1, name
    for name in ("std", "entropy", "mutual_info"):  # the QU-BraTS score of each map, in [0, 1]
        assert 0 <= summary[f"qubrats_score_{name}_WT"] <= 1, name
    # one case: nothing to refer, the curve is that case's Dice
    assert summary["retention_auc"] == summary["retention_oracle_auc"] == pytest.approx(summary["dice_WT"])
    with open(tmp_path / "triage_cases.csv") as f:
        assert [r["case"] for r in csv.DictReader(f)] == [rows[0]["case"]]
    assert Image.open(tmp_path / "retention_curve.png").size[0] > 200
    for name in MAPS:
        assert (tmp_path / f"{rows[0]['case']}_{name}.nii.gz").is_file(), name
    assert (tmp_path / f"{rows[0]['case']}_uncertainty.png").is_file()


def test_regions_variant_writes_brats_labels(trained, tmp_path):
    _, dirs = trained
    dirs = {**dirs, "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    run_bundle(BUNDLE, ["train.json", "regions.json"], epochs=1, **dirs, **SMALL)
    test_dir = {**dirs, "output_dir": str(tmp_path / "test")}
    run_bundle(BUNDLE, ["train.json", "regions.json", "evaluate.json"], **test_dir, **FAST_EVAL)
    with open(tmp_path / "test" / "metrics_per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["case", *report_columns(("TC", "WT", "ET"))]
    datalist = load_datalist("brats", dirs["dataset_dir"], validate=False)[:1]
    run_bundle(BUNDLE, ["inference.json", "regions.json"], datalist=datalist,
               checkpoint=str(tmp_path / "models" / "model.pt"), output_dir=str(tmp_path / "out"), **FAST_INFER)
    seg = nib.load(tmp_path / "out" / f"{datalist[0]['case']}_seg.nii.gz").get_fdata()
    prob = nib.load(tmp_path / "out" / f"{datalist[0]['case']}_prob.nii.gz")
    assert seg.shape == nib.load(datalist[0]["image"][0]).shape
    assert prob.shape == (*seg.shape, 3)  # TC, WT, ET as a 4D NIfTI
    assert set(np.unique(seg)) <= {0, 1, 2, 4}


def test_resunet3d_variant_trains_and_infers_with_sliding_windows(trained, tmp_path):
    _, dirs = trained
    dirs = {**dirs, "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    roi = {"roi_size": [32, 32, 16]}
    run_bundle(BUNDLE, ["train.json", "resunet3d.json"], epochs=1, num_workers=0, **dirs, **roi, **NET)
    net = ResUNet(3, 4, 1, channels=(8, 16, 32), blocks=(1, 1, 1))
    net.load_state_dict(torch.load(tmp_path / "models" / "model.pt", weights_only=True))
    datalist = load_datalist("brats", dirs["dataset_dir"], validate=False)[:1]
    run_bundle(BUNDLE, ["inference.json", "resunet3d.json"], datalist=datalist,
               checkpoint=str(tmp_path / "models" / "model.pt"), output_dir=str(tmp_path / "out"), **roi, **FAST_INFER)
    std = nib.load(tmp_path / "out" / f"{datalist[0]['case']}_std.nii.gz")
    assert std.shape == nib.load(datalist[0]["image"][0]).shape and std.get_fdata().max() > 0


def test_monai_label_style_workflow_on_a_stacked_volume(trained, tmp_path):
    """MONAI Label hands the bundle ONE file: the four modalities stacked as a 4D NIfTI."""
    root, dirs = trained
    item = load_datalist("brats", dirs["dataset_dir"], validate=False)[0]
    flair = nib.load(item["image"][0])
    stacked = np.stack([nib.load(p).get_fdata() for p in item["image"]], axis=-1)
    path = tmp_path / f"{item['case']}.nii.gz"
    nib.save(nib.Nifti1Image(stacked.astype(np.float32), flair.affine), path)
    workflow = ConfigWorkflow(
        config_file=config_files(BUNDLE, "inference.json")[0],
        meta_file=config_files(BUNDLE, "metadata.json")[0],
        logging_file=str(BUNDLES / BUNDLE / "configs" / "logging.conf"),
        workflow_type="infer",
        datalist=[{"image": str(path)}],
        checkpoint=str(root / "models" / "model.pt"),
        output_dir=str(tmp_path / "out"),
        **FAST_INFER,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    seg = nib.load(tmp_path / "out" / f"{item['case']}_seg.nii.gz")
    assert seg.shape == flair.shape and np.allclose(seg.affine, flair.affine)
    pred = workflow.evaluator.state.output[0]["pred"]
    assert pred.shape == (1, *flair.shape)  # MONAI Label's one-channel label


def test_metadata_and_network_checks(trained, tmp_path):
    root, _ = trained
    meta = config_files(BUNDLE, "metadata.json")[0]
    inference = config_files(BUNDLE, "inference.json")[0]
    verify_metadata(meta_file=meta, filepath=str(SCHEMA))
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=inference, device="cpu")
    ts = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=meta, config_file=inference, **NET)
    exported = torch.jit.load(str(ts))
    net = ResUNet(2, 4, 1, channels=(8, 16, 32), blocks=(1, 1, 1)).eval()
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(exported(x), net(x), atol=1e-5)


# ---------------------------------------------------------------------------------------------- volume metrics


def test_volume_metrics_of_a_perfect_and_an_empty_prediction():
    label = torch.zeros(2, 12, 12, 6)
    label[0, 3:8, 3:8, 2:4] = 1  # region 0 present, region 1 absent
    error = torch.zeros_like(label)
    error[0, 3, 3:8, 2:4] = 1  # one wrong row, flagged by the uncertainty
    prob = (label - error).clamp(0, 1)
    metrics = compute_volume_metrics(prob, error, label, torch.ones(12, 12, 6), spacing=(1.0, 1.0, 2.0))
    assert metrics["dice"][1] == 1 and metrics["hd95"][1] == 0  # both empty: perfect, distance 0
    assert 0 < metrics["dice"][0] < 1 and metrics["hd95"][0] == 1.0
    assert metrics["specificity"][0] == 1 and metrics["sensitivity"][0] == pytest.approx(40 / 50)
    assert metrics["uncertainty_auroc"][0] == 1  # the uncertainty is exactly the error
    assert torch.isnan(metrics["uncertainty_auroc"][1])  # no error to detect
    # 0/1 probabilities: only the 10 missed voxels (in the p = 0 bin, of 864) are miscalibrated
    torch.testing.assert_close(metrics["ece"], torch.tensor([10 / 864, 0.0]))
