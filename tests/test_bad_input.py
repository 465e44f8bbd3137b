"""The bad-input matrix (docs/reliability.md): every broken input gets a ValueError naming the file and
the problem before training starts, or, with ``skip_invalid``, is logged, skipped and counted; bundle
inference on a folder goes on past a bad file and lists it in ``failures.csv``."""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_seg.data import (
    load_datalist,
    load_split,
    make_demo,
    read_train_masks_csv,
    validate_datalist,
)
from monai_seg.engines import check_network_input
from monai_seg.networks import ResUNet, TwoHeadUNet
from tests.bundle_utils import bundle_network, run_bundle

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (6, 8)  # (H, W) of the 2D files
VOLUME = (8, 8, 4)  # BraTS volumes


# ---------------------------------------------------------------------------------------------- writers


def write_tif(path, array, dtype=np.uint8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tifffile.imwrite(path, np.asarray(array, dtype=dtype), photometric="minisblack")


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)


def truncate(path, drop=10):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - drop)


def garble(path):
    with open(path, "wb") as f:
        f.write(b"not an image at all")


def binary(shape=SHAPE):
    mask = np.zeros(shape, np.uint8)
    mask[1:3, 2:5] = 255
    return mask


def nerve(root, pairs=((1, 1), (1, 2), (2, 1))):
    """Kaggle nerve train/ pairs of noise images and 0/255 masks."""
    for subject, img in pairs:
        write_tif(root / "train" / f"{subject}_{img}.tif", np.random.default_rng(img).integers(0, 255, SHAPE))
        write_tif(root / "train" / f"{subject}_{img}_mask.tif", binary())
    return root


def isic(root, ids=(1, 2)):
    for number in ids:
        write_png(root / f"ISIC_{number:07d}.png", np.full((*SHAPE, 3), 120, np.uint8))
        write_png(root / f"ISIC_{number:07d}_segmentation.png", binary())
    return root


def xray(root):
    """X-ray train/ with one 16-bit image (large enough that cutting its end cuts pixel data) and its class map."""
    image = np.random.default_rng(0).integers(0, 65535, (32, 32)).astype(np.uint16)
    write_png(root / "train" / "images" / "a.png", image)
    write_png(root / "train" / "masks" / "a.png", np.random.default_rng(1).integers(0, 3, (32, 32)).astype(np.uint8))
    return root


def brats(root):
    return make_demo("brats", root, num_cases=1, shape=VOLUME)


def brats_file(root, modality):
    return os.path.join(root, "BraTS2021_00000", f"BraTS2021_00000_{modality}.nii.gz")


def rewrite_nifti(path, array=None, affine=None):
    image = nib.load(path)
    data = np.asarray(image.dataobj) if array is None else array
    nib.save(nib.Nifti1Image(data, image.affine if affine is None else affine), path)


def rle_csv(root, rle):
    path = root / "train_masks.csv"
    path.write_text(f"subject,img,pixels\n1,1,1 2\n1,2,{rle}\n")
    return path


def net_item(shape, name="case_7.png"):
    return [{"image": MetaTensor(torch.zeros(shape), meta={"filename_or_obj": name})}]


# ---------------------------------------------------------------------------------------------- the matrix


def _nerve_truncated_image(tmp):
    root = nerve(tmp)
    truncate(root / "train" / "1_2.tif")
    return lambda: load_datalist("nerve", root), root / "train" / "1_2.tif"


def _nerve_mask_128(tmp):
    root = nerve(tmp)
    mask = binary()
    mask[0, 0] = 128
    write_tif(root / "train" / "2_1_mask.tif", mask)
    return lambda: load_datalist("nerve", root), root / "train" / "2_1_mask.tif"


def _nerve_inf(tmp):
    root = nerve(tmp)
    image = np.full(SHAPE, 0.5, np.float32)
    image[2, 3] = np.inf
    write_tif(root / "train" / "1_1.tif", image, dtype=np.float32)
    return lambda: load_datalist("nerve", root), root / "train" / "1_1.tif"


def _nerve_duplicate_id(tmp):
    root = nerve(tmp)
    write_tif(root / "train" / "1_01.tif", np.zeros(SHAPE))
    return lambda: load_datalist("nerve", root, validate=False), root / "train" / "1_01.tif"


def _nerve_empty_dir(tmp):
    (tmp / "train").mkdir()
    return lambda: load_split("nerve", tmp), tmp / "train"


def _isic_missing_dir(tmp):
    return lambda: load_split("isic", tmp), tmp / "train"


def _isic_garbled_image(tmp):
    root = isic(tmp / "train")
    garble(root / "ISIC_0000002.png")
    return lambda: load_datalist("isic", tmp, "train", labels="required"), root / "ISIC_0000002.png"


def _isic_size_mismatch(tmp):
    root = isic(tmp / "train")
    write_png(root / "ISIC_0000001_segmentation.png", binary((6, 9)))
    return lambda: load_datalist("isic", tmp, "train", labels="required"), root / "ISIC_0000001_segmentation.png"


def _isic_grayscale(tmp):
    root = isic(tmp / "train")
    write_png(root / "ISIC_0000002.png", np.full(SHAPE, 120, np.uint8))
    return lambda: load_datalist("isic", tmp, "train", labels="required"), root / "ISIC_0000002.png"


def _isic_missing_mask(tmp):
    root = isic(tmp / "train")
    os.remove(root / "ISIC_0000002_segmentation.png")
    return lambda: load_datalist("isic", tmp, "train", labels="required", validate=False), root / "ISIC_0000002.png"


def _isic_id_in_train_and_val(tmp):
    isic(tmp / "train", ids=(1, 2))
    isic(tmp / "val", ids=(2, 3))
    return lambda: load_split("isic", tmp), tmp / "val" / "ISIC_0000002.png"


def _xray_truncated_image(tmp):
    root = xray(tmp)
    truncate(root / "train" / "images" / "a.png", drop=200)
    return lambda: load_datalist("xray", root), root / "train" / "images" / "a.png"


def _xray_truncated_mask(tmp):
    root = xray(tmp)
    truncate(root / "train" / "masks" / "a.png", drop=100)
    return lambda: load_datalist("xray", root), root / "train" / "masks" / "a.png"


def _xray_class_out_of_range(tmp):
    root = xray(tmp)
    write_png(root / "train" / "masks" / "a.png", np.full((32, 32), 5, np.uint8))
    return lambda: load_datalist("xray", root, num_classes=3), root / "train" / "masks" / "a.png"


def _brats_truncated(tmp):
    root = brats(tmp)
    noise = np.random.default_rng(0).standard_normal((8, 8, 64)).astype(np.float32)  # 16 kB, hardly compressible
    rewrite_nifti(brats_file(root, "t1"), noise)
    truncate(brats_file(root, "t1"), drop=400)  # the header stays readable, the voxels end early
    return lambda: load_datalist("brats", root, labels="required"), brats_file(root, "t1")


def _brats_missing_modality(tmp):
    root = brats(tmp)
    os.remove(brats_file(root, "t1ce"))
    return lambda: load_split("brats", root), brats_file(root, "t1ce")


def _brats_shape(tmp):
    root = brats(tmp)
    rewrite_nifti(brats_file(root, "t2"), np.zeros((8, 8, 5), np.int16))
    return lambda: load_datalist("brats", root, labels="required"), brats_file(root, "t2")


def _brats_affine(tmp):
    root = brats(tmp)
    rewrite_nifti(brats_file(root, "flair"), affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    return lambda: load_datalist("brats", root, labels="required"), brats_file(root, "t1")


def _brats_label_3_in_2019(tmp):
    root = brats(tmp)
    rewrite_nifti(brats_file(root, "seg"), np.full(VOLUME, 3, np.uint8))
    return lambda: load_datalist("brats", root, labels="required", label_convention="2019"), brats_file(root, "seg")


def _brats_nan(tmp):
    root = brats(tmp)
    volume = np.ones(VOLUME, np.float32)
    volume[1, 2, 3] = np.nan
    rewrite_nifti(brats_file(root, "t1ce"), volume)
    return lambda: load_datalist("brats", root, labels="required"), brats_file(root, "t1ce")


def _rle_odd(tmp):
    path = rle_csv(tmp, "5 3 9")
    return lambda: read_train_masks_csv(path), f"{path} line 3"


def _rle_out_of_range(tmp):
    path = rle_csv(tmp, "40 10")  # past the end of 6x8 = 48 pixels
    return lambda: read_train_masks_csv(path, shape=SHAPE), f"{path} line 3"


def _rle_overlap(tmp):
    path = rle_csv(tmp, "5 4 7 2")
    return lambda: read_train_masks_csv(path), f"{path} line 3"


def _net_channels(tmp):
    net = TwoHeadUNet(2, 1, 1, channels=(16, 16), presence_grid=(2, 2))
    return lambda: check_network_input(net_item((3, 16, 16)), net), "case_7.png"


def _net_spatial_size(tmp):
    net = ResUNet(2, 1, 1, channels=(4, 8, 8, 8), blocks=1)
    return lambda: check_network_input(net_item((1, 20, 16)), net), "case_7.png"


MATRIX = {
    "truncated TIF": (_nerve_truncated_image, "Cannot read TIF .*truncated"),
    "truncated PNG image": (_xray_truncated_image, "Cannot read image"),
    "truncated PNG mask": (_xray_truncated_mask, "Cannot read image"),
    "truncated NIfTI": (_brats_truncated, "Cannot read NIfTI .*: Compressed file ended"),
    "unreadable image": (_isic_garbled_image, "Cannot read image"),
    "image/mask size mismatch": (_isic_size_mismatch, r"is 9x6 \(WxH\) but its image .* is 8x6"),
    "image without mask": (_isic_missing_mask, "has no label file"),
    "BraTS missing modality": (_brats_missing_modality, "has no modality file"),
    "BraTS modality shapes differ": (_brats_shape, r"has shape \(8, 8, 5\) but .* has shape \(8, 8, 4\)"),
    "BraTS modality affines differ": (_brats_affine, "is not on the grid of"),
    "BraTS label 3 under 2019": (_brats_label_3_in_2019, r"has values \[3\] outside the convention \(0, 1, 2, 4\)"),
    "128 in a 0/255 mask": (_nerve_mask_128, r"has values \[0, 128, 255\], expected only 0 and 255"),
    "class value out of range": (_xray_class_out_of_range, r"has values \[5\], expected values within \[0, 1, 2\]"),
    "NaN voxels": (_brats_nan, "has 1 NaN and 0 infinite value"),
    "Inf pixels": (_nerve_inf, "has 0 NaN and 1 infinite value"),
    "wrong image mode (channels)": (_isic_grayscale, r"has PIL mode L, expected one of \['RGB'\]"),
    "wrong channel count for the net": (_net_channels, r"has 3 channel\(s\) .* in_channels=1"),
    "spatial size the net cannot take": (_net_spatial_size, r"cannot go through the network: .*not divisible by .*8"),
    "empty dataset folder": (_nerve_empty_dir, "has no images"),
    "nonexistent dataset folder": (_isic_missing_dir, "does not exist"),
    "duplicate image id": (_nerve_duplicate_id, "have the same id 1_1"),
    "same id in train and val": (_isic_id_in_train_and_val, "have the same id ISIC_0000002"),
    "RLE odd count": (_rle_odd, "odd number of values"),
    "RLE out of range": (_rle_out_of_range, "runs past the end of the 6x8 image"),
    "RLE overlapping runs": (_rle_overlap, "starts before the end of the previous run"),
}


@pytest.mark.parametrize("build, problem", MATRIX.values(), ids=MATRIX.keys())
def test_bad_input_names_the_file_and_the_problem(tmp_path, build, problem):
    call, bad_file = build(tmp_path)
    with pytest.raises(ValueError, match=problem) as error:
        call()
    assert str(bad_file) in str(error.value)


# ---------------------------------------------------------------------------------------------- skip_invalid


@pytest.mark.parametrize("skip_invalid", [True, "true"])  # "true": as `--skip_invalid true` passes it
def test_skip_invalid_logs_skips_and_counts(tmp_path, caplog, skip_invalid):
    root = nerve(tmp_path, pairs=[(s, i) for s in (1, 2, 3) for i in (1, 2)])
    os.remove(root / "train" / "3_2_mask.tif")  # pairing stage
    write_tif(root / "train" / "2_1_mask.tif", binary() // 2)  # validation stage: values 0/127
    truncate(root / "train" / "1_2.tif")
    with caplog.at_level(logging.WARNING, logger="monai_seg.data"):
        split = load_split("nerve", root, skip_invalid=skip_invalid)
    kept = sorted(item["id"] for section in split.values() for item in section)
    assert kept == ["1_1", "2_2", "3_1"]
    log = caplog.text
    for bad in ("3_2.tif", "2_1_mask.tif", "1_2.tif"):
        assert str(root / "train" / bad) in log
    assert "skipped 1 of 6 cases" in log and "skipped 2 of 5 cases" in log


@pytest.mark.parametrize("skip_invalid", [False, "false"])
def test_without_skip_invalid_the_first_bad_case_stops(tmp_path, skip_invalid):
    root = nerve(tmp_path)
    truncate(root / "train" / "1_2.tif")
    with pytest.raises(ValueError, match="1_2.tif: .*truncated"):
        load_split("nerve", root, skip_invalid=skip_invalid)


def test_skip_invalid_writes_failures_and_refuses_an_all_bad_set(tmp_path):
    root = brats(tmp_path / "brats")
    rewrite_nifti(brats_file(root, "seg"), np.full(VOLUME, 3, np.uint8))
    failures = tmp_path / "out" / "failures.csv"
    with pytest.raises(ValueError, match=f"all 1 cases are invalid; see {failures}"):
        load_datalist("brats", root, labels="required", skip_invalid=True, failures_csv=failures)
    with open(failures) as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == [os.path.join(root, "BraTS2021_00000")]
    assert "outside the convention" in rows[0]["error"]


def test_validation_shows_a_progress_bar_for_large_sets(tmp_path, capsys):
    isic(tmp_path / "train", ids=range(100))
    datalist = load_datalist("isic", tmp_path, "train", labels="none", validate=False)
    validate_datalist("isic", datalist)
    assert re.search(r"validating ISIC: 100%.*100/100", capsys.readouterr().err)
    validate_datalist("isic", datalist[:99])
    assert "validating" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- bundles

BUNDLE = "nerve_ultrasound_segmentation"
SMALL = {"num_workers": 0, "batch_size": 2, "network_def#channels": [16, 16, 16, 16, 16]}


@pytest.fixture(scope="module")
def nerve_bundle_data(tmp_path_factory):
    """Tiny Kaggle nerve demo data, one training mask and one test image broken, and a checkpoint."""
    root = tmp_path_factory.mktemp("nerve_bundle")
    data = make_demo("nerve", str(root / "data"), num_subjects=3, images_per_subject=2, num_test=3, size=(42, 58))
    write_tif(os.path.join(data, "train", "2_1_mask.tif"), np.full((42, 58), 128))
    garble(os.path.join(data, "test", "2.tif"))
    torch.save(bundle_network("nerve_ultrasound_segmentation", **SMALL).state_dict(), root / "model.pt")
    return root, data


def bundle_error(pattern, *args, **kwargs):
    """Run a bundle; the ValueError (which MONAI's config parser chains into a RuntimeError) must match."""
    with pytest.raises((ValueError, RuntimeError)) as error:
        run_bundle(*args, **kwargs)
    err = error.value
    while not isinstance(err, ValueError) and err.__cause__ is not None:
        err = err.__cause__
    assert isinstance(err, ValueError) and re.search(pattern, str(err)), str(error.value)


def test_bundle_training_checks_before_training_and_skips_when_asked(nerve_bundle_data, tmp_path, capsys):
    root, data = nerve_bundle_data
    dirs = {"dataset_dir": data, "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    bundle_error("2_1_mask.tif has values", BUNDLE, ["train.json"], run_id="training", epochs=1, **dirs, **SMALL)
    pattern = r"Image .*\.tif of shape \(1, 100, 80\) .*not divisible by the net's total stride 16"
    bundle_error(pattern, BUNDLE, ["train.json"], skip_invalid=True, spatial_size=[100, 80], **dirs, **SMALL)
    pattern = r"Image .*\.tif has 1 channel\(s\) .* in_channels=3"
    bundle_error(pattern, BUNDLE, ["train.json"], skip_invalid=True, **{"network_def#in_channels": 3}, **dirs, **SMALL)
    assert not os.path.exists(tmp_path / "models" / "model.pt")  # nothing trained
    capsys.readouterr()
    run_bundle(BUNDLE, ["train.json"], run_id="training", epochs=1, skip_invalid=True, **dirs, **SMALL)
    log = capsys.readouterr().out  # the bundle's logging.conf logs to stdout
    assert "2_1_mask.tif has values [128]" in log and "skipped 1 of 6 cases" in log
    assert os.path.isfile(tmp_path / "models" / "model.pt")


def test_bundle_inference_continues_past_a_bad_file(nerve_bundle_data, tmp_path):
    root, data = nerve_bundle_data
    args = {"dataset_dir": data, "checkpoint": str(root / "model.pt"), "output_dir": str(tmp_path)}
    pattern = f"Cannot read TIF {re.escape(os.path.join(data, 'test', '2.tif'))}"
    bundle_error(pattern, BUNDLE, ["inference.json"], **args, **SMALL)
    assert not os.path.exists(tmp_path / "masks")
    run_bundle(BUNDLE, ["inference.json"], skip_invalid=True, **args, **SMALL)
    assert sorted(os.listdir(tmp_path / "masks")) == ["1_mask.png", "3_mask.png"]
    with open(tmp_path / "failures.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == [os.path.join(data, "test", "2.tif")]
    assert rows[0]["error"].startswith("Cannot read TIF")
    # the failure list of a run is one of its results: a new run does not replace it without --overwrite true
    failures = (tmp_path / "failures.csv").read_bytes()
    shutil.rmtree(tmp_path / "masks")
    os.remove(tmp_path / "submission.csv")
    with pytest.raises(RuntimeError) as error:  # the bundle parser wraps the FileExistsError
        run_bundle(BUNDLE, ["inference.json"], skip_invalid=True, **args, **SMALL)
    assert isinstance(error.value.__cause__, FileExistsError)
    assert re.search(r"failures\.csv exists.*--overwrite true", str(error.value.__cause__))
    assert (tmp_path / "failures.csv").read_bytes() == failures and not (tmp_path / "masks").exists()
