"""BraTS data layer: reader, validation errors, case-wise splits, slices, label conversion, demo data."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, ConvertToMultiChannelBasedOnBratsClasses, EnsureChannelFirstd, LoadImaged

from monai_seg.data import (
    BRATS_MODALITIES,
    brats_case_name,
    brats_name_formatter,
    brats_slices,
    ensure_demo,
    load_datalist,
    load_split,
    make_demo,
    regions_to_brats_labels,
    validate_datalist,
)

SHAPE = (24, 20, 10)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Five small demo cases, shared read-only by the tests."""
    return make_demo("brats", tmp_path_factory.mktemp("brats") / "demo", num_cases=5, shape=SHAPE)


@pytest.fixture
def case_copy(demo, tmp_path):
    """A writable copy of two demo cases, for tests that break files."""
    for case in sorted(os.listdir(demo))[:2]:
        shutil.copytree(os.path.join(demo, case), tmp_path / case)
    return tmp_path


def rewrite(path, array=None, affine=None):
    """Rewrite a NIfTI file with another array and/or affine."""
    image = nib.load(path)
    data = np.asarray(image.dataobj) if array is None else array
    nib.save(nib.Nifti1Image(data, image.affine if affine is None else affine), path)


# ---------------------------------------------------------------------------------------------- demo data


def test_demo_layout_geometry_and_labels(demo):
    cases = sorted(os.listdir(demo))
    assert cases == [f"BraTS2021_{i:05d}" for i in range(5)]
    folder = os.path.join(demo, cases[0])
    assert sorted(os.listdir(folder)) == sorted(f"{cases[0]}_{m}.nii.gz" for m in (*BRATS_MODALITIES, "seg"))
    seg = nib.load(os.path.join(folder, f"{cases[0]}_seg.nii.gz"))
    flair = nib.load(os.path.join(folder, f"{cases[0]}_flair.nii.gz"))
    assert seg.shape == flair.shape == SHAPE
    np.testing.assert_array_equal(seg.affine, flair.affine)
    assert set(np.unique(seg.get_fdata())) == {0, 1, 2, 4}  # all three tumour regions
    brain = flair.get_fdata().any((0, 1))
    assert not brain[0] and not brain[-1] and brain[SHAPE[2] // 2]  # slices without brain at both ends


def test_demo_is_deterministic_and_has_a_2023_convention(demo, tmp_path):
    again = make_demo("brats", tmp_path / "again", num_cases=1, shape=SHAPE)
    name = "BraTS2021_00000/BraTS2021_00000_t1ce.nii.gz"
    first, second = (nib.load(os.path.join(folder, name)).dataobj for folder in (demo, again))
    np.testing.assert_array_equal(first, second)
    with pytest.raises(FileExistsError):
        make_demo("brats", again, num_cases=1, shape=SHAPE)
    new = make_demo("brats", tmp_path / "2023", num_cases=1, shape=SHAPE, label_convention="2023")
    seg = nib.load(os.path.join(new, "BraTS2021_00000/BraTS2021_00000_seg.nii.gz")).get_fdata()
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    validate_datalist("brats", load_datalist("brats", new, labels="required", validate=False), label_convention="2023")


def test_datalist_reads_the_2023_file_names(case_copy):
    names_2023 = dict(zip((*BRATS_MODALITIES, "seg"), ("t2f", "t1n", "t1c", "t2w", "seg")))
    for path in case_copy.glob("*/*.nii.gz"):
        case, suffix = path.name[: -len(".nii.gz")].rsplit("_", 1)
        path.rename(path.with_name(f"{case}-{names_2023[suffix]}.nii.gz"))
    datalist = load_datalist("brats", case_copy, labels="required", validate=False,
                             modalities=("t2f", "t1n", "t1c", "t2w"), separator="-")
    assert datalist[0]["image"][0].endswith(f"{datalist[0]['case']}-t2f.nii.gz")
    assert datalist[0]["label"].endswith("-seg.nii.gz")
    assert brats_case_name(datalist[0]["image"][3]) == datalist[0]["case"]


def test_ensure_demo_creates_once(tmp_path):
    target = tmp_path / "data"
    assert ensure_demo("brats", target, num_cases=1, shape=SHAPE) == str(target)
    stamp = os.path.getmtime(target / "BraTS2021_00000")
    ensure_demo("brats", target, num_cases=2, shape=SHAPE)  # exists: untouched
    assert os.listdir(target) == ["BraTS2021_00000"] and os.path.getmtime(target / "BraTS2021_00000") == stamp
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".demo_")]


# ---------------------------------------------------------------------------------------------- reader


def test_datalist_stacks_modalities_in_a_fixed_order(demo):
    datalist = load_datalist("brats", demo, labels="required", validate=False)
    assert [item["case"] for item in datalist] == sorted(os.listdir(demo))
    item = datalist[0]
    assert [os.path.basename(p) for p in item["image"]] == [f"{item['case']}_{m}.nii.gz" for m in BRATS_MODALITIES]
    assert item["label"].endswith("_seg.nii.gz")
    image = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])(item)["image"]
    assert image.shape == (4, *SHAPE)
    np.testing.assert_array_equal(image[2].numpy(), nib.load(item["image"][2]).get_fdata())  # channel 2 = T1ce


def test_datalist_errors_and_label_options(case_copy):
    os.remove(next(case_copy.glob("*/*_seg.nii.gz")))
    with pytest.raises(ValueError, match="has no label file .*_seg.nii.gz"):
        load_datalist("brats", case_copy, labels="required", validate=False)
    optional = load_datalist("brats", case_copy, labels="optional", validate=False)
    assert ["label" in item for item in optional] == [False, True]
    assert all("label" not in item for item in load_datalist("brats", case_copy, labels="none", validate=False))
    os.remove(next(case_copy.glob("*/*_t1ce.nii.gz")))
    with pytest.raises(ValueError, match="has no modality file .*_t1ce.nii.gz"):
        load_datalist("brats", case_copy, labels="none", validate=False)
    with pytest.raises(ValueError, match="does not exist"):
        load_datalist("brats", case_copy / "missing", labels="required", validate=False)
    with pytest.raises(ValueError, match="labels must be"):
        load_datalist("brats", case_copy, labels="maybe")


def test_validation_names_the_file_with_wrong_shape(case_copy):
    t2 = str(next(case_copy.glob("*/*_t2.nii.gz")))
    rewrite(t2, np.zeros((SHAPE[0], SHAPE[1], SHAPE[2] + 1), np.int16))
    with pytest.raises(ValueError, match=f"{t2} has shape"):
        validate_datalist("brats", load_datalist("brats", case_copy, labels="required", validate=False))


def test_validation_names_the_file_with_another_affine(case_copy):
    seg = str(next(case_copy.glob("*/*_seg.nii.gz")))
    rewrite(seg, affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=f"{seg} is not on the grid"):
        validate_datalist("brats", load_datalist("brats", case_copy, labels="required", validate=False))


def test_validation_checks_the_label_convention(case_copy):
    seg = str(next(case_copy.glob("*/*_seg.nii.gz")))
    validate_datalist("brats", load_datalist("brats", case_copy, labels="required", validate=False))
    with pytest.raises(ValueError, match=rf"{seg} has values \[4\] outside the convention \(0, 1, 2, 3\)"):
        load_datalist("brats", case_copy, labels="required", label_convention="2023")
    data = np.asarray(nib.load(seg).dataobj).copy()
    data[0, 0, 0] = 3
    rewrite(seg, data)
    with pytest.raises(ValueError, match=rf"{seg} has values \[3\] outside the convention \(0, 1, 2, 4\)"):
        validate_datalist("brats", load_datalist("brats", case_copy, labels="required", validate=False))
    with pytest.raises(ValueError, match="label_convention must be"):
        load_datalist("brats", case_copy, labels="required", label_convention="2018")


def test_validation_rejects_a_4d_modality(case_copy):
    flair = str(next(case_copy.glob("*/*_flair.nii.gz")))
    rewrite(flair, np.zeros((*SHAPE, 2), np.int16))
    with pytest.raises(ValueError, match=f"{flair} is not a 3D volume"):
        validate_datalist("brats", load_datalist("brats", case_copy, labels="required", validate=False))


# ---------------------------------------------------------------------------------------------- splits and names


def test_split_is_by_case_deterministic_and_complete(demo):
    split = load_split("brats", demo, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    cases = [item["case"] for part in split.values() for item in part]
    assert sorted(cases) == sorted(os.listdir(demo))
    assert split == load_split("brats", demo, val_fraction=0.2, test_fraction=0.2, seed=3, validate=False)
    assert len(load_split("brats", demo, val_fraction=0.2, test_fraction=0.0)["test"]) == 0
    with pytest.raises(ValueError, match="none for training"):
        load_split("brats", demo, val_fraction=0.6, test_fraction=0.3)
    with pytest.raises(ValueError, match="val_fraction"):
        load_split("brats", demo, val_fraction=1.0)


def test_case_names_and_output_names():
    assert brats_case_name("/data/BraTS2021_00012/BraTS2021_00012_flair.nii.gz") == "BraTS2021_00012"
    assert brats_case_name("/upload/BraTS2021_00012.nii.gz") == "BraTS2021_00012"  # a stacked 4D volume
    assert brats_case_name("/upload/volume.nii") == "volume"
    meta = {"filename_or_obj": "/d/Case_7/Case_7_t1.nii.gz"}
    assert brats_name_formatter(meta, None) == {"subject": "Case_7", "idx": None}


# ---------------------------------------------------------------------------------------------- slices


def load_volume(keys=("image", "label")):
    return Compose([LoadImaged(list(keys), image_only=True), EnsureChannelFirstd(list(keys))])


def test_slices_round_trip_to_the_volume(demo):
    datalist = load_datalist("brats", demo, labels="required", validate=False)[:1]
    volume = load_volume()(datalist[0])
    slices = brats_slices(datalist, load_volume(), min_brain_fraction=0.0, tumour_free_fraction=1.0)
    brain = volume["image"].any(0).any(0).any(0).nonzero().flatten().tolist()
    assert [s["slice"] for s in slices] == brain  # every slice with brain, none without
    for key in ("image", "label"):
        stacked = torch.stack([s[key] for s in slices], dim=-1)
        torch.testing.assert_close(stacked.as_tensor(), volume[key][..., brain].as_tensor())
    assert slices[0]["image"].meta["filename_or_obj"] == f"{datalist[0]['case']}_slice{brain[0]:03d}"
    assert slices[0]["image"].shape == (4, SHAPE[0], SHAPE[1])


def test_slices_keep_a_fraction_of_tumour_free_slices(demo):
    datalist = load_datalist("brats", demo, labels="required", validate=False)[:2]
    tumour_only = brats_slices(datalist, load_volume(), tumour_free_fraction=0.0)
    assert tumour_only and all(s["label"].any() for s in tumour_only)
    everything = brats_slices(datalist, load_volume(), tumour_free_fraction=1.0)
    free_per_case = Counter(s["case"] for s in everything if not s["label"].any())
    assert free_per_case and len(everything) == len(tumour_only) + sum(free_per_case.values())
    half = brats_slices(datalist, load_volume(), tumour_free_fraction=0.5, seed=1)
    assert len(half) - len(tumour_only) == sum(round(0.5 * n) for n in free_per_case.values())
    again = brats_slices(datalist, load_volume(), tumour_free_fraction=0.5, seed=1)
    assert [(s["case"], s["slice"]) for s in half] == [(s["case"], s["slice"]) for s in again]
    with pytest.raises(ValueError, match="tumour_free_fraction"):
        brats_slices(datalist, load_volume(), tumour_free_fraction=1.5)


# ---------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("enhancing", [4, 3])
def test_regions_to_labels_inverts_monai_brats_channels(demo, enhancing):
    item = load_datalist("brats", demo, labels="required", validate=False)[0]
    label = torch.as_tensor(nib.load(item["label"]).get_fdata())
    label[label == 4] = enhancing
    regions = ConvertToMultiChannelBasedOnBratsClasses(et_label=enhancing)(label[None]).float()
    torch.testing.assert_close(regions_to_brats_labels(regions, enhancing_label=enhancing), label[None].float())
    with pytest.raises(ValueError, match="TC, WT, ET"):
        regions_to_brats_labels(regions[:2])
