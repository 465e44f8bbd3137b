"""The ``monai-seg`` console script: bundles, demo, figures, and their errors."""

from __future__ import annotations

import functools
import importlib.metadata
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import monai_seg.data
from monai_seg.cli import _source_image, main
from monai_seg.data import load_datalist, make_demo
from tests.bundle_utils import BUNDLES

BUNDLE_NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())


def test_installed_script_help(capsys):
    """The console script is installed and runs ``main`` (its help is called in this process: a subprocess would
    spend 10 s importing MONAI again)."""
    assert shutil.which("monai-seg") is not None, "the console script is missing: pip install -e ."
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="monai-seg")
    assert script.load() is main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("bundles", "demo", "figures"))


def test_bundles_lists_every_bundle_with_net_and_layout(capsys):
    main(["bundles"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["bundle", "net", "data", "task"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert sorted(rows) == BUNDLE_NAMES
    assert rows["nerve_ultrasound_segmentation"] == ["TwoHeadUNet", "nerve"]
    assert rows["brats_mri_uncertainty"] == ["ResUNet", "brats"]


def test_bundles_dir_option_and_errors(tmp_path, capsys):
    bundle = tmp_path / "my_bundle" / "configs"
    bundle.mkdir(parents=True)
    (bundle / "metadata.json").write_text('{"task": "my task"}')
    (bundle / "train.json").write_text('{"network_def": {"_target_": "BasicUNet"}}')
    main(["bundles", "--bundles_dir", str(tmp_path)])
    assert capsys.readouterr().out.splitlines()[1].split() == ["my_bundle", "BasicUNet", "-", "my", "task"]
    with pytest.raises(SystemExit, match="has no demo data"):
        main(["demo", "my_bundle", str(tmp_path / "data"), "--bundles_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="does not exist: pass --bundles_dir"):
        main(["bundles", "--bundles_dir", str(tmp_path / "nowhere")])
    (bundle / "train.json").write_text("{")
    with pytest.raises(SystemExit, match="Cannot read .*train.json"):
        main(["bundles", "--bundles_dir", str(tmp_path)])


def test_demo_writes_the_bundle_layout_and_keeps_existing_data(tmp_path, monkeypatch, capsys):
    # the bundle's own generator, with fewer images than its defaults to keep the test fast
    monkeypatch.setattr(monai_seg.data, "make_demo", functools.partial(make_demo, num_train=2, num_val=1, num_test=1))
    out = tmp_path / "isic"
    main(["demo", "skin_lesion_segmentation", str(out)])
    assert capsys.readouterr().out.strip() == str(out)
    assert len(load_datalist("isic", out, "train", validate=False)) == 2
    with pytest.raises(SystemExit, match="exists; pass overwrite=True"):
        main(["demo", "skin_lesion_segmentation", str(out)])
    main(["demo", "skin_lesion_segmentation", str(out), "--overwrite", "--seed", "1"])
    assert len(load_datalist("isic", out, "val", validate=False)) == 1


def test_demo_unknown_bundle_names_the_known_ones(tmp_path):
    with pytest.raises(SystemExit, match="Unknown bundle 'nerve'; the bundles are: brats_mri_uncertainty, "):
        main(["demo", "nerve", str(tmp_path)])
    assert not (tmp_path / "train").exists()


def test_figures_of_2d_masks(tmp_path, capsys):
    make_demo("isic", tmp_path / "demo_data", num_train=1, num_val=1, num_test=3)
    masks = tmp_path / "outputs" / "masks"
    masks.mkdir(parents=True)
    for item in load_datalist("isic", tmp_path / "demo_data", "test", validate=False):  # ground truth as "predictions"
        shutil.copy(item["label"], masks / item["label"].split("/")[-1])
    main(["figures", str(tmp_path / "outputs"), "--num_images", "2"])  # dataset: outputs/../demo_data
    figure = tmp_path / "outputs" / "overlays.png"
    assert capsys.readouterr().out.split() == [str(figure)]
    assert Image.open(figure).size[1] > 300  # two rows
    with pytest.raises(SystemExit, match="No image in .* for the mask"):
        main(["figures", str(tmp_path / "outputs"), "--dataset_dir", str(tmp_path / "outputs")])


def test_figures_of_brats_uncertainty_outputs(tmp_path, capsys):
    make_demo("brats", tmp_path / "data", num_cases=2, shape=(32, 32, 12))
    out = tmp_path / "out"
    out.mkdir()
    for item in load_datalist("brats", tmp_path / "data", validate=False):
        seg = nib.load(item["label"])
        prob = (np.asarray(seg.dataobj) > 0).astype(np.float32)
        for name, array in (("prob", prob), ("std", 0.5 * prob * (1 - prob) + 0.1 * prob), ("mutual_info", prob / 4)):
            nib.save(nib.Nifti1Image(array, seg.affine), out / f"{item['case']}_{name}.nii.gz")
    main(["figures", str(out), "--dataset_dir", str(tmp_path / "data"), "--maps", "std", "mutual_info"])
    written = capsys.readouterr().out.split()
    assert [f.split("/")[-1] for f in written] == [
        f"BraTS2021_0000{k}_{m}.png" for k in (0, 1) for m in ("std", "mutual_info")
    ]
    assert Image.open(written[0]).size[0] > 500
    other = make_demo("brats", tmp_path / "other", num_cases=1, shape=(32, 32, 12), seed=1)  # another case only
    for path in sorted((tmp_path / "other").rglob("BraTS2021_00000*"), reverse=True):
        path.rename(path.with_name(path.name.replace("BraTS2021_00000", "BraTS2021_00009")))
    with pytest.raises(SystemExit, match="has no case folder BraTS2021_00000"):
        main(["figures", str(out), "--dataset_dir", other])
    with pytest.raises(SystemExit, match="has no map BraTS2021_00000_tta_std.nii.gz: .* configs/tta.json"):
        main(["figures", str(out), "--dataset_dir", str(tmp_path / "data"), "--maps", "tta_std"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["figures", "{tmp}/missing"], "Output folder .*missing does not exist"),
        (["figures", "{tmp}"], "No dataset folder .*demo_data beside"),
        (["figures", "{tmp}", "--dataset_dir", "{tmp}"], "holds no bundle outputs"),
        (["figures", "{tmp}", "--dataset_dir", "{tmp}/nowhere"], "Dataset folder .*nowhere does not exist"),
    ],
)
def test_figures_errors(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        main([arg.format(tmp=tmp_path) for arg in argv])


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as error:
        main(["figures", "x", "--maps", "variance"])
    assert error.value.code == 2 and "invalid choice: 'variance'" in capsys.readouterr().err


def test_source_image_prefers_images_over_ground_truth(tmp_path):
    for path in ("test/images/case_1.png", "test/masks/case_1.png", "test/images/case_10.png", "train/case.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    index = {"case_1": [str(tmp_path / "test/masks/case_1.png"), str(tmp_path / "test/images/case_1.png")],
             "case_10": [str(tmp_path / "test/images/case_10.png")], "case": [str(tmp_path / "train/case.png")]}
    assert _source_image("out/case_1_classes.png", index, str(tmp_path)) == str(tmp_path / "test/images/case_1.png")
    assert _source_image("case_10_classes.png", index, str(tmp_path)) == str(tmp_path / "test/images/case_10.png")
