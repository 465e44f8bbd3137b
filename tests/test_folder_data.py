"""Folder readers of the ISIC, DRIVE and X-ray layouts: pairing, validation errors and demo generators."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from monai_seg.data import ensure_demo, load_datalist, load_split, make_demo, validate_datalist

SHAPE = (6, 8)  # (H, W)


def write(path, array, mode=None):
    """Write an image file with PIL, creating its folder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array), mode).save(path)


def rgb(shape=SHAPE):
    return np.full((*shape, 3), 120, np.uint8)


def binary(shape=SHAPE, value=255):
    mask = np.zeros(shape, np.uint8)
    mask[1:3, 2:5] = value
    return mask


def garble(path):
    with open(path, "wb") as f:
        f.write(b"not an image")


# ---------------------------------------------------------------------------------------------- ISIC


@pytest.fixture
def isic(tmp_path):
    """train/ with ISIC_0000002 and ISIC_0000010 (numeric order), a superpixel map and a CSV that are ignored."""
    for number in (10, 2):
        write(tmp_path / "train" / f"ISIC_{number:07d}.jpg", rgb())
        write(tmp_path / "train" / f"ISIC_{number:07d}_segmentation.png", binary())
    write(tmp_path / "train" / "ISIC_0000002_superpixels.png", rgb())
    (tmp_path / "train" / "ISIC-2017_Training_Data_metadata.csv").write_text("image_id,age\n")
    return tmp_path


def test_isic_datalist(isic):
    datalist = load_datalist("isic", isic, "train", labels="required", validate=False)
    folder = isic / "train"
    assert datalist == [
        {"image": str(folder / f"{i}.jpg"), "label": str(folder / f"{i}_segmentation.png"), "id": i}
        for i in ("ISIC_0000002", "ISIC_0000010")
    ]
    assert validate_datalist("isic", datalist) is datalist
    unlabeled = load_datalist("isic", isic, "train", labels="none", validate=False)
    assert unlabeled == [{"image": d["image"], "id": d["id"]} for d in datalist]


def test_isic_separate_mask_folder(isic):
    os.makedirs(isic / "masks")
    for name in ("ISIC_0000002_segmentation.png", "ISIC_0000010_segmentation.png"):
        os.rename(isic / "train" / name, isic / "masks" / name)
    datalist = load_datalist("isic", isic, "train", validate=False, folders={"label": isic / "masks"})
    assert [d["label"] for d in datalist] == [str(isic / "masks" / f"ISIC_{n:07d}_segmentation.png") for n in (2, 10)]
    with pytest.raises(ValueError, match="Image .*ISIC_0000002.jpg has no label file .*ISIC_0000002_segmentation.png"):
        load_datalist("isic", isic, "train", labels="required", validate=False)


@pytest.mark.parametrize(
    "change, name, message",
    [
        (lambda d: os.remove(d / "ISIC_0000010_segmentation.png"), "ISIC_0000010.jpg", "has no label file"),
        (lambda d: os.remove(d / "ISIC_0000010.jpg"), "ISIC_0000010_segmentation.png", "Label file .* has no image"),
        (lambda d: write(d / "lesion.jpg", rgb()), "lesion.jpg", "does not follow the ISIC naming"),
        (lambda d: write(d / "ISIC_0000010.png", rgb()), "ISIC_0000010.png", "same id ISIC_0000010"),
    ],
)
def test_isic_datalist_errors(isic, change, name, message):
    change(isic / "train")
    with pytest.raises(ValueError, match=message) as error:
        load_datalist("isic", isic, "train", labels="required", validate=False)
    assert name in str(error.value)


MASK_10 = "ISIC_0000010_segmentation.png"


@pytest.mark.parametrize(
    "change, name, message",
    [
        (lambda d: write(d / MASK_10, binary((6, 9))), MASK_10, r"is 9x6 \(WxH\) .* is 8x6"),
        (lambda d: write(d / MASK_10, binary(value=128)), MASK_10,
         r"values \[0, 128\], expected values within \[0, 255\] or \[0, 1\]"),
        (lambda d: write(d / MASK_10, np.where(np.eye(*SHAPE) > 0, 1, binary()).astype(np.uint8)), MASK_10,
         r"values \[0, 1, 255\]"),
        (lambda d: write(d / MASK_10, rgb()), MASK_10, "not a single-channel"),
        (lambda d: write(d / "ISIC_0000010.jpg", binary()), "ISIC_0000010.jpg", "mode L, expected one of"),
        (lambda d: garble(d / "ISIC_0000010.jpg"), "ISIC_0000010.jpg", "Cannot read image"),
    ],
)
def test_isic_validation_errors(isic, change, name, message):
    datalist = load_datalist("isic", isic, "train", labels="required", validate=False)
    change(isic / "train")
    with pytest.raises(ValueError, match=message) as error:
        validate_datalist("isic", datalist)
    assert str(isic / "train" / name) in str(error.value)


def test_isic_missing_or_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="ISIC folder .*missing does not exist"):
        load_datalist("isic", tmp_path / "missing", "train", validate=False)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="has no images"):
        load_datalist("isic", tmp_path, "train", validate=False)


# ---------------------------------------------------------------------------------------------- DRIVE


def write_drive(root, section, number, manual=True, shape=SHAPE):
    write(root / section / "images" / f"{number:02d}_{section}.tif", rgb(shape))
    if manual:
        write(root / section / "1st_manual" / f"{number:02d}_manual1.gif", binary())
    write(root / section / "mask" / f"{number:02d}_{section}_mask.gif", np.full(SHAPE, 255, np.uint8))


@pytest.fixture
def drive(tmp_path):
    for number in (21, 22, 23):
        write_drive(tmp_path, "training", number)
    write_drive(tmp_path, "test", 1, manual=False)
    return tmp_path


def test_drive_datalist(drive):
    datalist = load_datalist("drive", drive, validate=False)
    assert [d["id"] for d in datalist] == ["21", "22", "23"]
    assert datalist[0] == {
        "image": str(drive / "training" / "images" / "21_training.tif"),
        "label": str(drive / "training" / "1st_manual" / "21_manual1.gif"),
        "fov": str(drive / "training" / "mask" / "21_training_mask.gif"),
        "id": "21",
    }
    validate_datalist("drive", datalist)  # palette GIFs are checked as gray levels 0/255
    test = load_datalist("drive", drive, "test", validate=False)
    assert test == [{"image": str(drive / "test" / "images" / "01_test.tif"),
                     "fov": str(drive / "test" / "mask" / "01_test_mask.gif"), "id": "01"}]
    with pytest.raises(ValueError, match="section"):
        load_datalist("drive", drive, "validation", validate=False)


@pytest.mark.parametrize(
    "change, name, message",
    [
        (lambda d: os.remove(d / "mask" / "22_training_mask.gif"), "22_training.tif",
         "has no fov file .*22_training_mask.gif"),
        (lambda d: os.remove(d / "1st_manual" / "22_manual1.gif"), "22_training.tif",
         "has no label file .*22_manual1.gif"),
        (lambda d: os.remove(d / "images" / "22_training.tif"), "22_manual1.gif", "Label file .* has no image"),
        (lambda d: write(d / "images" / "24_test.tif", rgb()), "24_test.tif", "does not follow the DRIVE naming"),
    ],
)
def test_drive_datalist_errors(drive, change, name, message):
    change(drive / "training")
    with pytest.raises(ValueError, match=message) as error:
        load_datalist("drive", drive, validate=False)
    assert name in str(error.value)


@pytest.mark.parametrize(
    "change, name, message",
    [
        (lambda d: write(d / "mask" / "22_training_mask.gif", np.full((6, 9), 255, np.uint8)),
         "mask/22_training_mask.gif", "is 9x6"),
        (lambda d: write(d / "1st_manual" / "22_manual1.gif", binary(value=100)), "1st_manual/22_manual1.gif",
         r"\[0, 100\]"),
        (lambda d: write(d / "images" / "22_training.tif", binary()), "images/22_training.tif", "mode L"),
    ],
)
def test_drive_validation_errors(drive, change, name, message):
    datalist = load_datalist("drive", drive, validate=False)
    change(drive / "training")
    with pytest.raises(ValueError, match=message) as error:
        validate_datalist("drive", datalist)
    assert str(drive / "training" / name) in str(error.value)


def test_drive_split(drive):
    split = load_split("drive", drive, val_fraction=0.3, seed=1)
    assert len(split["val"]) == 1 and len(split["train"]) == 2
    assert sorted(d["id"] for d in split["train"] + split["val"]) == ["21", "22", "23"]
    assert load_split("drive", drive, val_fraction=0.3, seed=1) == split
    with pytest.raises(ValueError, match="val_fraction"):
        load_split("drive", drive, val_fraction=1.0)


# ---------------------------------------------------------------------------------------------- X-ray


@pytest.fixture
def xray(tmp_path):
    """train/ with a 16-bit PNG and a 16-bit TIFF image, val/ with an 8-bit PNG, class masks 0..2."""
    classes = np.zeros(SHAPE, np.uint8)
    classes[2:4, 1:3], classes[4:, 5:] = 1, 2
    write(tmp_path / "train" / "images" / "case10.png", np.full(SHAPE, 40000, np.uint16))
    write(tmp_path / "train" / "images" / "case2.tif", np.full(SHAPE, 300, np.uint16))
    write(tmp_path / "val" / "images" / "a.png", np.full(SHAPE, 30, np.uint8))
    for section, name in (("train", "case10"), ("train", "case2"), ("val", "a")):
        write(tmp_path / section / "masks" / f"{name}.png", classes)
    return tmp_path


def test_xray_datalist(xray):
    datalist = load_datalist("xray", xray, validate=False)
    assert [d["id"] for d in datalist] == ["case2", "case10"]
    assert datalist[0]["image"] == str(xray / "train" / "images" / "case2.tif")
    assert datalist[0]["label"] == str(xray / "train" / "masks" / "case2.png")
    validate_datalist("xray", datalist)
    split = load_split("xray", xray)
    assert [d["id"] for d in split["val"]] == ["a"]
    with pytest.raises(ValueError, match=r"values \[0, 1, 2\], expected values within \[0, 1\]"):
        validate_datalist("xray", datalist, num_classes=2)


@pytest.mark.parametrize(
    "change, name, message",
    [
        (lambda d: os.remove(d / "masks" / "case2.png"), "case2.tif", "has no label file .*case2.png"),
        (lambda d: write(d / "masks" / "case3.png", np.zeros(SHAPE, np.uint8)), "case3.png", "has no image"),
        (lambda d: write(d / "images" / "case3.jpg", np.zeros(SHAPE, np.uint8)), "case3.jpg", "X-ray naming"),
        (lambda d: write(d / "images" / "case2.png", np.zeros(SHAPE, np.uint8)), "case2.png", "same id case2"),
    ],
)
def test_xray_datalist_errors(xray, change, name, message):
    change(xray / "train")
    with pytest.raises(ValueError, match=message) as error:
        load_datalist("xray", xray, validate=False)
    assert name in str(error.value)


@pytest.mark.parametrize(
    "change, name, message",
    [
        (lambda d: write(d / "masks" / "case2.png", np.full(SHAPE, 3, np.uint8)), "masks/case2.png", r"values \[3\]"),
        (lambda d: write(d / "masks" / "case2.png", np.zeros((7, 8), np.uint8)), "masks/case2.png", "is 8x7"),
        (lambda d: write(d / "images" / "case2.tif", rgb()), "images/case2.tif", "mode RGB"),
    ],
)
def test_xray_validation_errors(xray, change, name, message):
    datalist = load_datalist("xray", xray, validate=False)
    change(xray / "train")
    with pytest.raises(ValueError, match=message) as error:
        validate_datalist("xray", datalist)
    assert str(xray / "train" / name) in str(error.value)


def test_xray_unlabeled_sections(xray):
    write(xray / "test" / "images" / "t.png", np.zeros(SHAPE, np.uint16))
    test = load_datalist("xray", xray, "test", validate=False)
    assert test == [{"image": str(xray / "test" / "images" / "t.png"), "id": "t"}]
    os.rename(xray / "val" / "masks", xray / "val" / "labels")
    with pytest.raises(ValueError, match="has no masks/ folder"):
        load_split("xray", xray)


# ---------------------------------------------------------------------------------------------- demo data


def test_isic_demo(tmp_path):
    root = make_demo("isic", tmp_path, num_train=3, num_val=2, num_test=1)
    split = load_split("isic", root)  # validates every file
    assert [d["id"] for d in split["val"]] == ["ISIC_0000003", "ISIC_0000004"]
    image, mask = Image.open(split["train"][0]["image"]), np.asarray(Image.open(split["train"][0]["label"]))
    assert image.mode == "RGB" and image.size == mask.shape[::-1] and set(np.unique(mask)) == {0, 255}
    lesion = np.asarray(image, np.float32)[mask > 0].mean(0)
    skin = np.asarray(image, np.float32)[mask == 0].mean(0)
    assert (lesion < skin).all()  # lesions are darker than skin in every channel
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_demo("isic", tmp_path, num_train=1)


def test_drive_demo(tmp_path):
    root = make_demo("drive", tmp_path, num_training=2, num_test=1, size=(120, 110))
    datalist = load_datalist("drive", root, validate=False)
    test = load_datalist("drive", root, "test", validate=False)
    validate_datalist("drive", datalist + test)
    assert [d["id"] for d in datalist] == ["21", "22"] and test[0]["id"] == "01"
    image = np.asarray(Image.open(datalist[0]["image"]), np.float32)
    vessels = np.asarray(Image.open(datalist[0]["label"]).convert("L")) > 0
    fov = np.asarray(Image.open(datalist[0]["fov"]).convert("L")) > 0
    assert image.shape == (120, 110, 3) and not (vessels & ~fov).any()
    assert 0.01 < vessels[fov].mean() < 0.3
    assert image[vessels, 1].mean() < 0.9 * image[fov & ~vessels, 1].mean()  # vessels are dark in green
    assert image[~fov].max() < 20  # black outside the field of view


def test_xray_demo(tmp_path):
    root = make_demo("xray", tmp_path, num_train=2, num_val=1, num_test=1, size=(40, 32), image_format="tif")
    split = load_split("xray", root)
    image = np.asarray(Image.open(split["train"][0]["image"]))
    labels = np.asarray(Image.open(split["train"][0]["label"]))
    assert image.dtype == np.uint16 and image.shape == labels.shape == (40, 32) and image.max() > 10000
    means = [image[labels == c].mean() for c in range(3) if (labels == c).any()]
    assert means == sorted(means)  # background < soft tissue < bone
    with pytest.raises(ValueError, match="image_format"):
        make_demo("xray", tmp_path / "other", image_format="jpg")


@pytest.mark.parametrize(
    "layout, marker, kwargs",
    [
        ("isic", "train", {"num_train": 2, "num_val": 1, "num_test": 1}),
        ("drive", "training", {"num_training": 2, "num_test": 1, "size": (30, 40)}),
        ("xray", "train", {"num_train": 2, "num_val": 1, "num_test": 1, "size": (30, 40)}),
    ],
)
def test_demo_deterministic_and_ensure(tmp_path, layout, marker, kwargs):
    first, second = make_demo(layout, tmp_path / "a", **kwargs), make_demo(layout, tmp_path / "b", **kwargs)
    files = sorted(os.path.relpath(os.path.join(r, f), first) for r, _, names in os.walk(first) for f in names)
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    os.makedirs(tmp_path / "c" / marker)  # an existing dataset is kept as it is
    assert ensure_demo(layout, tmp_path / "c") == str(tmp_path / "c") and os.listdir(tmp_path / "c") == [marker]


def test_ensure_demo_moves_a_complete_dataset_into_place(tmp_path):
    root = ensure_demo("isic", tmp_path / "isic", num_train=1, num_val=1, num_test=1)
    assert root == str(tmp_path / "isic") and sorted(os.listdir(root)) == ["test", "train", "val"]  # no staging left
    load_split("isic", root)


# ---------------------------------------------------------------------------------------------- patient PNG layout


def test_patient_layout_splits_by_patient_and_names_bad_files(tmp_path):
    root = make_demo("patients", tmp_path / "data", num_patients=5, images_per_patient=3, num_test=2, size=(24, 32))
    assert make_demo("patients", tmp_path / "again", num_patients=5, images_per_patient=3, num_test=2, size=(24, 32))
    assert (tmp_path / "data/train/P003_0002.png").read_bytes() == (tmp_path / "again/train/P003_0002.png").read_bytes()
    train = load_datalist("patients", root)
    assert train[0] == {"image": str(tmp_path / "data/train/P001_0001.png"),
                        "label": str(tmp_path / "data/train/P001_0001_mask.png"),
                        "patient": 1, "img": 1, "id": "P001_0001"}
    split = load_split("patients", root, val_fraction=0.4, seed=2)
    assert len({i["patient"] for i in split["val"]}) == 2
    assert not {i["patient"] for i in split["train"]} & {i["patient"] for i in split["val"]}
    assert [i["id"] for i in load_datalist("patients", root, "test")] == ["P006_0001", "P007_0001"]
    os.remove(tmp_path / "data/train/P002_0003_mask.png")
    with pytest.raises(ValueError, match=r"Image .*P002_0003.png has no label file .*P002_0003_mask.png"):
        load_split("patients", root)
