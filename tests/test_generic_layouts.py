"""Your own data: the Decathlon datalist JSON and nnU-Net raw layouts (datalists, splits, errors, a bundle run)."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImaged
from PIL import Image

from monai_seg.data import load_datalist, load_split
from tests.bundle_utils import config_files, run_bundle

SHAPE = (32, 24)  # (H, W) of the 2D images

pytestmark = pytest.mark.usefixtures("one_thread")


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)


def classes(seed, num_classes=3):
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:20, 3:15] = 1
    labels[8 + seed % 5 : 14 + seed % 5, 6:10] = num_classes - 1
    return labels


def write_nnunet_2d(root, cases=("case_00", "case_01", "case_02", "case_03", "case_04"), test=("new_00",)):
    """An nnU-Net raw dataset of one-channel 8-bit PNGs with classes 0, 1, 2."""
    root.mkdir(parents=True, exist_ok=True)
    labels = {"background": 0, "soft tissue": 1, "bone": 2}
    description = {"channel_names": {"0": "X-ray"}, "labels": labels, "numTraining": len(cases),
                   "file_ending": ".png"}
    (root / "dataset.json").write_text(json.dumps(description))
    for i, case in enumerate(cases):
        label = classes(i)
        write_png(root / "imagesTr" / f"{case}_0000.png", (40 + 80 * label).astype(np.uint8))
        write_png(root / "labelsTr" / f"{case}.png", label)
    for case in test:
        write_png(root / "imagesTs" / f"{case}_0000.png", np.full(SHAPE, 50, np.uint8))
    return root


def write_nnunet_3d(root, cases=("la_003", "la_004")):
    """An nnU-Net raw dataset of two-channel NIfTI volumes with a binary label."""
    root.mkdir(parents=True, exist_ok=True)
    description = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "tumour": 1},
                   "numTraining": len(cases), "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(description))
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir()
    for case in cases:
        for channel in range(2):
            volume = np.full((8, 8, 4), 10.0 * (channel + 1), np.float32)
            nib.save(nib.Nifti1Image(volume, np.eye(4)), root / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
        label = np.zeros((8, 8, 4), np.uint8)
        label[2:5, 2:5, 1:3] = 1
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / "labelsTr" / f"{case}.nii.gz")
    return root


def write_decathlon(root, validation=True, folds=False):
    """PNG images and masks with a Decathlon datalist JSON (relative paths), 6 training cases."""
    training = []
    for i in range(6):
        write_png(root / "images" / f"img{i}.png", np.full(SHAPE, 30 + i, np.uint8))
        write_png(root / "masks" / f"img{i}.png", classes(i))
        item = {"image": f"images/img{i}.png", "label": f"masks/img{i}.png"}
        training.append({**item, "fold": i % 3} if folds else item)
    write_png(root / "images" / "unseen.png", np.zeros(SHAPE, np.uint8))
    sections = {"training": training[:4] if validation else training, "test": ["images/unseen.png"]}
    if validation:
        sections["validation"] = training[4:]
    (root / "datalist.json").write_text(json.dumps(sections))
    return root / "datalist.json"


# ---------------------------------------------------------------------------------------------- nnU-Net


def test_nnunet_2d_datalists_and_split(tmp_path):
    root = write_nnunet_2d(tmp_path / "Dataset001_Xray")
    train = load_datalist("nnunet", root, "train", in_channels=1, label_values=[0, 1, 2])
    assert train[0] == {"image": str(root / "imagesTr" / "case_00_0000.png"),
                        "label": str(root / "labelsTr" / "case_00.png"), "id": "case_00"}
    assert [item["id"] for item in train] == [f"case_0{i}" for i in range(5)]
    test = load_datalist("nnunet", root, "test")
    assert test == [{"image": str(root / "imagesTs" / "new_00_0000.png"), "id": "new_00"}]
    split = load_split("nnunet", root, val_fraction=0.4, seed=1)
    assert len(split["val"]) == 2 and sorted(i["id"] for i in split["train"] + split["val"]) == [i["id"] for i in train]
    assert load_split("nnunet", root, val_fraction=0.4, seed=1) == split
    fold = load_split("nnunet", root, fold=0, num_folds=5, validate=False)
    assert len(fold["val"]) == 1 and len(fold["train"]) == 4


def test_nnunet_3d_stacks_the_channel_files(tmp_path):
    root = write_nnunet_3d(tmp_path / "Dataset002_Prostate")
    item = load_datalist("nnunet", root, "train", in_channels=2, label_values=[0, 1])[0]
    assert item["image"] == [str(root / "imagesTr" / f"la_003_000{c}.nii.gz") for c in range(2)]
    image = LoadImaged("image", image_only=True, ensure_channel_first=True)(item)["image"]
    assert image.shape == (2, 8, 8, 4) and image[1].mean() == 20  # channel 1 is the _0001 file


@pytest.mark.parametrize(
    "change, options, name, message",
    [
        (lambda r: os.remove(r / "labelsTr" / "case_01.png"), {}, "labelsTr/case_01.png", "has no label file"),
        (lambda r: os.remove(r / "imagesTr" / "case_02_0000.png"), {}, "labelsTr/case_02.png", "has no image"),
        (lambda r: write_png(r / "imagesTr" / "case_01_0000.png", np.zeros((*SHAPE, 3), np.uint8)), {},
         "imagesTr/case_01_0000.png", r"has 3 channel\(s\), but the bundle's network takes in_channels=1"),
        (lambda r: None, {"in_channels": 2}, "dataset.json", r"declares 1 channel\(s\) \['X-ray'\].*in_channels=2"),
        (lambda r: write_png(r / "labelsTr" / "case_03.png", np.full(SHAPE, 5, np.uint8)), {},
         "labelsTr/case_03.png", r"values \[5\] outside the bundle's label map \[0, 1, 2\]"),
        (lambda r: None, {"label_values": [0, 1]}, "dataset.json", r"label values \[2\] outside"),
        (lambda r: write_png(r / "labelsTr" / "case_00.png", np.zeros((5, 5), np.uint8)), {},
         "labelsTr/case_00.png", "has shape"),
        (lambda r: write_png(r / "imagesTr" / "case_00.png", np.zeros(SHAPE, np.uint8)), {},
         "imagesTr/case_00.png", "does not follow the nnU-Net naming"),
    ],
)
def test_nnunet_errors_name_the_file(tmp_path, change, options, name, message):
    root = write_nnunet_2d(tmp_path / "data")
    change(root)
    with pytest.raises(ValueError, match=message) as error:
        load_split("nnunet", root, **{"in_channels": 1, "label_values": [0, 1, 2], **options})
    assert str(root / name) in str(error.value)


def test_nnunet_skip_invalid_drops_a_bad_case(tmp_path):
    root = write_nnunet_2d(tmp_path / "data")
    write_png(root / "labelsTr" / "case_03.png", np.full(SHAPE, 5, np.uint8))
    split = load_split("nnunet", root, val_fraction=0.25, label_values=[0, 1, 2], skip_invalid=True)
    assert sorted(i["id"] for i in split["train"] + split["val"]) == ["case_00", "case_01", "case_02", "case_04"]


# ---------------------------------------------------------------------------------------------- Decathlon


def test_decathlon_sections_and_relative_paths(tmp_path):
    path = write_decathlon(tmp_path)
    split = load_split("decathlon", path, label_values=[0, 1, 2], in_channels=1)
    assert [i["id"] for i in split["train"]] == ["img0", "img1", "img2", "img3"]
    assert [i["id"] for i in split["val"]] == ["img4", "img5"]
    assert split["train"][0] == {"image": str(tmp_path / "images" / "img0.png"),
                                 "label": str(tmp_path / "masks" / "img0.png"), "id": "img0"}
    test = load_datalist("decathlon", path, "test")
    assert test == [{"image": str(tmp_path / "images" / "unseen.png"), "id": "unseen"}]
    os.rename(path, tmp_path / "dataset.json")  # a folder holding dataset.json
    assert load_split("decathlon", tmp_path, validate=False) == split


def test_decathlon_without_validation_splits_training_by_fold_keys_or_at_random(tmp_path):
    path = write_decathlon(tmp_path, validation=False, folds=True)
    split = load_split("decathlon", path, fold=1)
    assert [i["id"] for i in split["val"]] == ["img1", "img4"] and len(split["train"]) == 4
    random = load_split("decathlon", path, val_fraction=0.5, seed=3)
    assert len(random["val"]) == 3 and random == load_split("decathlon", path, val_fraction=0.5, seed=3)


@pytest.mark.parametrize(
    "change, options, name, message",
    [
        (lambda r: os.remove(r / "masks" / "img2.png"), {}, "masks/img2.png", "has no label file"),
        (lambda r: write_png(r / "masks" / "img4.png", np.full(SHAPE, 7, np.uint8)), {}, "masks/img4.png",
         r"values \[7\] outside the bundle's label map"),
        (lambda r: None, {"in_channels": 3}, "images/img0.png", r"has 1 channel\(s\).*in_channels=3"),
        (lambda r: os.remove(r / "datalist.json"), {}, "datalist.json", "does not exist"),
    ],
)
def test_decathlon_errors_name_the_file(tmp_path, change, options, name, message):
    path = write_decathlon(tmp_path)
    change(tmp_path)
    with pytest.raises(ValueError, match=message) as error:
        load_split("decathlon", path, **{"label_values": [0, 1, 2], **options})
    assert str(tmp_path / name) in str(error.value)


def test_decathlon_section_missing(tmp_path):
    path = write_decathlon(tmp_path)
    with pytest.raises(ValueError, match="section must be one of"):
        load_datalist("decathlon", path, "training")


# ---------------------------------------------------------------------------------------------- a bundle


def test_xray_bundle_trains_on_an_nnunet_dataset(tmp_path):
    """`--layout nnunet --dataset_dir ...`: the bundle's datalists come from the nnU-Net folder, training runs."""
    from monai.bundle import ConfigParser

    root = write_nnunet_2d(tmp_path / "Dataset001_Xray", cases=[f"case_{i:02d}" for i in range(6)])
    parser = ConfigParser()
    parser.read_config(config_files("xray_multiclass_segmentation", "train.json"))
    parser.update({"layout": "nnunet", "dataset_dir": str(root)})
    datalists = parser.get_parsed_content("datalists")
    assert datalists == load_split("nnunet", root, val_fraction=0.2, seed=0)
    assert all(item["image"].endswith("_0000.png") for item in datalists["train"] + datalists["val"])
    out = tmp_path / "eval"
    run_bundle("xray_multiclass_segmentation", ["train.json"], run_id="training", layout="nnunet",
               dataset_dir=str(root), ckpt_dir=str(tmp_path / "models"), output_dir=str(out), epochs=1,
               num_workers=0, batch_size=2, spatial_size=[32, 32], intensity_range=[0, 255],
               **{"network_def#features": [4, 4, 8, 16, 32, 4]})
    assert (tmp_path / "models" / "model.pt").is_file()
