import os

import numpy as np
import pytest
import tifffile

from monai_seg.data import (
    ensure_demo,
    group_kfold,
    group_split,
    load_datalist,
    load_split,
    make_demo,
    make_nerve_test_images,
    read_submission,
    read_train_masks_csv,
    rle_decode,
    validate_datalist,
)

SHAPE = (6, 8)


def write_tif(path, array):
    tifffile.imwrite(path, np.asarray(array, dtype=np.uint8), photometric="minisblack")


def write_pair(folder, subject, img, image_shape=SHAPE, mask=None):
    """Write {subject}_{img}.tif (of ``image_shape``) and {subject}_{img}_mask.tif (of SHAPE)."""
    os.makedirs(folder, exist_ok=True)
    image, label = os.path.join(folder, f"{subject}_{img}.tif"), os.path.join(folder, f"{subject}_{img}_mask.tif")
    write_tif(image, np.full(image_shape, 100))
    write_tif(label, np.zeros(SHAPE) if mask is None else mask)


@pytest.fixture
def dataset(tmp_path):
    """Subjects 1, 2 and 10 with 2, 2 and 10 images (numeric, not lexicographic, order)."""
    for subject, count in ((1, 2), (2, 2), (10, 10)):
        for img in range(1, count + 1):
            write_pair(tmp_path / "train", subject, img)
    return tmp_path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo("nerve", tmp_path_factory.mktemp("demo") / "nerve", num_subjects=6, images_per_subject=10,
                     num_test=12)


def fake_datalist(counts):
    """Datalist without files: subject -> number of images."""
    return [{"image": f"{s}_{i}.tif", "subject": s, "img": i} for s, n in counts.items() for i in range(1, n + 1)]


# ---------------------------------------------------------------------------------------------- reader


def test_datalist_train(dataset):
    datalist = load_datalist("nerve", dataset, validate=False)
    assert [item["id"] for item in datalist[:6]] == ["1_1", "1_2", "2_1", "2_2", "10_1", "10_2"]
    assert datalist[-1]["id"] == "10_10"
    assert datalist[4] == {
        "image": str(dataset / "train" / "10_1.tif"),
        "label": str(dataset / "train" / "10_1_mask.tif"),
        "subject": 10,
        "img": 1,
        "id": "10_1",
    }
    assert validate_datalist("nerve", datalist) is datalist


def test_datalist_test(tmp_path):
    (tmp_path / "test").mkdir()
    for img in (10, 2, 1):
        write_tif(tmp_path / "test" / f"{img}.tif", np.zeros(SHAPE))
    write_tif(tmp_path / "test" / ".hidden.tif", np.zeros(SHAPE))  # hidden files are ignored
    datalist = load_datalist("nerve", tmp_path, "test", validate=False)
    assert datalist == [{"image": str(tmp_path / "test" / f"{img}.tif"), "img": img} for img in (1, 2, 10)]
    validate_datalist("nerve", datalist)


@pytest.mark.parametrize(
    "change, name, message",
    [
        (lambda d: os.remove(d / "train" / "2_1_mask.tif"), "2_1.tif", "Image .* has no label file .*2_1_mask.tif"),
        (lambda d: os.remove(d / "train" / "2_1.tif"), "2_1_mask.tif", "Label file .* has no image .*2_1.tif"),
        (lambda d: write_tif(d / "train" / "1-3.tif", np.zeros(SHAPE)), "1-3.tif", "naming"),
        (lambda d: write_tif(d / "train" / "a_3.tif", np.zeros(SHAPE)), "a_3.tif", "naming"),
        (lambda d: (d / "train" / "notes.txt").write_text(""), "notes.txt", "naming"),
        (lambda d: write_tif(d / "train" / "1_01.tif", np.zeros(SHAPE)), "1_01.tif", "same id 1_1"),
    ],
)
def test_datalist_errors(dataset, change, name, message):
    change(dataset)
    with pytest.raises(ValueError, match=message) as error:
        load_datalist("nerve", dataset, validate=False)
    assert name in str(error.value)


def test_datalist_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as error:
        load_datalist("nerve", tmp_path / "missing", validate=False)
    assert str(tmp_path / "missing" / "train") in str(error.value)
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="has no images") as error:
        load_datalist("nerve", tmp_path, validate=False)
    assert str(tmp_path / "train") in str(error.value)
    with pytest.raises(ValueError, match="section"):
        load_datalist("nerve", tmp_path, "val", validate=False)


def test_datalist_test_errors(tmp_path):
    (tmp_path / "test").mkdir()
    write_tif(tmp_path / "test" / "1.tif", np.zeros(SHAPE))
    write_tif(tmp_path / "test" / "01.tif", np.zeros(SHAPE))
    with pytest.raises(ValueError, match="same id 1"):
        load_datalist("nerve", tmp_path, "test", validate=False)
    os.remove(tmp_path / "test" / "01.tif")
    write_tif(tmp_path / "test" / "1_mask.tif", np.zeros(SHAPE))
    with pytest.raises(ValueError, match="1_mask.tif does not follow"):
        load_datalist("nerve", tmp_path, "test", validate=False)


def truncate(path, keep=None):
    """Cut a TIF to its first ``keep`` bytes; by default drop the last 10 bytes (pixel data)."""
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10 if keep is None else keep)


def garble(path):
    with open(path, "wb") as f:
        f.write(b"not a tif at all")


@pytest.mark.parametrize(
    "change, bad_file, message",
    [
        (lambda d: write_pair(d / "train", 2, 1, image_shape=(6, 9)), "2_1_mask.tif", r"is 6x8 .* is 6x9"),
        (lambda d: truncate(d / "train" / "2_1.tif"), "2_1.tif", "Cannot read TIF .*truncated"),
        (lambda d: truncate(d / "train" / "2_1_mask.tif"), "2_1_mask.tif", "Cannot read TIF .*truncated"),
        (lambda d: truncate(d / "train" / "2_1.tif", keep=12), "2_1.tif", "Cannot read TIF"),
        (lambda d: garble(d / "train" / "2_1.tif"), "2_1.tif", "Cannot read TIF"),
        (lambda d: write_pair(d / "train", 2, 1, mask=np.full(SHAPE, 128)), "2_1_mask.tif", r"values \[128\]"),
        (lambda d: write_pair(d / "train", 2, 1, mask=np.eye(*SHAPE) * 254 + 1), "2_1_mask.tif", r"\[1, 255\]"),
        (
            lambda d: write_pair(d / "train", 2, 1, mask=np.eye(*SHAPE) * 255 + np.eye(*SHAPE, k=1)),
            "2_1_mask.tif",
            r"\[0, 1, 255\]",
        ),
        (lambda d: write_pair(d / "train", 2, 1, image_shape=SHAPE + (3,)), "2_1.tif", "not a 2D grayscale"),
    ],
)
def test_validate_errors(dataset, change, bad_file, message):
    datalist = load_datalist("nerve", dataset, validate=False)
    change(dataset)
    with pytest.raises(ValueError, match=message) as error:
        validate_datalist("nerve", datalist)
    assert str(dataset / "train" / bad_file) in str(error.value)


@pytest.mark.parametrize("mask", [np.eye(*SHAPE), np.eye(*SHAPE) * 255, np.ones(SHAPE)])
def test_validate_accepts_binary_masks(tmp_path, mask):
    write_pair(tmp_path / "train", 1, 1, mask=mask)
    validate_datalist("nerve", load_datalist("nerve", tmp_path, validate=False), progress=True)


# ---------------------------------------------------------------------------------------------- splits


def test_subject_split():
    datalist = fake_datalist({s: 3 + s % 4 for s in range(1, 21)})
    split = group_split(datalist, "subject", {"val": 0.2}, seed=1)
    train, val = split["train"], split["val"]
    train_subjects, val_subjects = {i["subject"] for i in train}, {i["subject"] for i in val}
    assert len(val_subjects) == 4 and not train_subjects & val_subjects
    assert sorted(train + val, key=datalist.index) == datalist
    assert group_split(datalist, "subject", {"val": 0.2}, seed=1) == split
    assert group_split(datalist, "subject", {"val": 0.2}, seed=2) != split
    assert len({i["subject"] for i in group_split(datalist[:6], "subject", {"val": 0.01})["val"]}) == 1


def test_subject_kfold():
    counts = {s: 1 + (7 * s) % 13 for s in range(1, 24)}
    datalist = fake_datalist(counts)
    val_subjects, sizes = [], []
    for fold in range(5):
        split = group_kfold(datalist, "subject", num_folds=5, fold=fold, seed=3)
        train, val = split["train"], split["val"]
        assert not {i["subject"] for i in train} & {i["subject"] for i in val}
        assert len(train) + len(val) == len(datalist)
        val_subjects.extend({i["subject"] for i in val})
        sizes.append(len(val))
    assert sorted(val_subjects) == sorted(counts)  # every subject in exactly one validation fold
    assert max(sizes) - min(sizes) <= max(counts.values())
    assert group_kfold(datalist, "subject", 5, 2, seed=3) == group_kfold(datalist, "subject", 5, 2, seed=3)


@pytest.mark.parametrize(
    "split, message",
    [
        (lambda d: group_kfold(d, "subject", num_folds=4), "4 folds need at least 4 subjects, got 3"),
        (lambda d: group_kfold(d, "subject", num_folds=3, fold=3), r"fold must be in \[0, 3\)"),
        (lambda d: group_kfold(d, "subject", num_folds=1), "num_folds"),
        (lambda d: group_split(d, "subject", {"val": 1.0}), "val_fraction"),
        (lambda d: group_split(d[:2], "subject", {"val": 0.2}), "at least 2 subjects"),
        (lambda d: group_split([{"image": "1.tif", "img": 1}], "subject", {"val": 0.2}), "1.tif has no 'subject'"),
    ],
)
def test_split_errors(split, message):
    with pytest.raises(ValueError, match=message):
        split(fake_datalist({1: 2, 2: 2, 3: 1}))


def test_nerve_split(demo):
    split = load_split("nerve", demo, val_fraction=0.34)
    assert len({i["subject"] for i in split["val"]}) == 2 and len(split["train"]) + len(split["val"]) == 60
    fold = load_split("nerve", demo, fold=1, num_folds=3, validate=False)
    assert fold == group_kfold(load_datalist("nerve", demo, validate=False), "subject", num_folds=3, fold=1)


# ---------------------------------------------------------------------------------------------- demo data


def test_demo_layout(demo):
    datalist = load_datalist("nerve", demo, validate=False)
    assert len(datalist) == 60 and {i["subject"] for i in datalist} == set(range(1, 7))
    assert [i["img"] for i in load_datalist("nerve", demo, "test", validate=False)] == list(range(1, 13))
    validate_datalist("nerve", datalist + load_datalist("nerve", demo, "test", validate=False))
    image, mask = tifffile.imread(datalist[0]["image"]), tifffile.imread(datalist[0]["label"])
    assert image.shape == mask.shape == (420, 580) and image.dtype == mask.dtype == np.uint8
    assert 40 < image.mean() < 160 and image.std() > 20
    masks = {i["id"]: tifffile.imread(i["label"]) for i in datalist}
    assert set(np.unique(np.stack(list(masks.values())))) == {0, 255}
    assert sum(not m.any() for m in masks.values()) == 30  # half of each subject's masks are empty
    for key, rle in read_train_masks_csv(os.path.join(demo, "train_masks.csv")).items():
        np.testing.assert_array_equal(rle_decode(rle, (420, 580)) * 255, masks.pop(key))
    assert not masks  # the CSV lists every training image


def test_demo_nerve_is_visible(demo):
    """The masked nerve differs from its surroundings: dark inside, bright rim."""
    for item in load_datalist("nerve", demo, validate=False)[:20]:
        image, mask = tifffile.imread(item["image"]).astype(float), tifffile.imread(item["label"]) > 0
        if mask.any():
            ys, xs = np.nonzero(mask)
            box = image[ys.min() - 10 : ys.max() + 10, xs.min() - 10 : xs.max() + 10]
            assert image[mask].mean() < 0.8 * box.mean()


def test_demo_deterministic(tmp_path):
    kwargs = dict(num_subjects=2, images_per_subject=3, num_test=2, size=(30, 40))
    first, second = make_demo("nerve", tmp_path / "a", **kwargs), make_demo("nerve", tmp_path / "b", **kwargs)
    other = make_demo("nerve", tmp_path / "c", seed=1, **kwargs)
    files = sorted(os.path.relpath(os.path.join(r, f), first) for r, _, names in os.walk(first) for f in names)
    assert len(files) == 2 * 6 + 2 + 2  # images and masks, test images, train_masks.csv and test_masks.csv
    for name in files:
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "test" / "1.tif").read_bytes() != (tmp_path / "c" / "test" / "1.tif").read_bytes()
    assert (tmp_path / "a" / "train" / "1_1.tif").read_bytes() != (tmp_path / "a" / "test" / "1.tif").read_bytes()


def test_demo_overwrite(tmp_path):
    kwargs = dict(images_per_subject=2, num_test=1, size=(30, 40))
    make_demo("nerve", tmp_path, num_subjects=3, **kwargs)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_demo("nerve", tmp_path, num_subjects=2, **kwargs)
    make_demo("nerve", tmp_path, num_subjects=2, overwrite=True, **kwargs)
    assert len(load_datalist("nerve", tmp_path, validate=False)) == 4  # no image of the third subject is left


def test_make_nerve_test_images(tmp_path):
    test_dir = make_nerve_test_images(tmp_path / "test", 3, seed=5, size=(20, 30))
    assert sorted(os.listdir(test_dir)) == ["1.tif", "2.tif", "3.tif"]
    assert tifffile.imread(os.path.join(test_dir, "3.tif")).shape == (20, 30)


def test_ensure_nerve_demo(tmp_path):
    root = tmp_path / "nerve"
    assert ensure_demo("nerve", root) == str(root)
    assert sorted(os.listdir(root)) == ["test", "test_masks.csv", "train", "train_masks.csv"]  # no staging left
    stamp = os.path.getmtime(root / "train")
    assert ensure_demo("nerve", root) == str(root) and os.path.getmtime(root / "train") == stamp
    assert len(load_datalist("nerve", root, validate=False)) == 120  # the default demo: 10 subjects x 12 images


@pytest.mark.parametrize("style", ["speckle", "fascicles"])
def test_demo_answer_key_matches_the_test_images(tmp_path, style):
    """test_masks.csv holds a nerve for about half the test images, in the submission format, and no others."""
    root = make_demo("nerve", tmp_path, num_subjects=1, images_per_subject=2, num_test=12, size=(60, 80), style=style)
    key = read_submission(os.path.join(root, "test_masks.csv"), shape=(60, 80))
    assert sorted(key) == list(range(1, 13)) == sorted(int(name[:-4]) for name in os.listdir(os.path.join(root, "test")))
    assert 3 <= sum(rle != "" for rle in key.values()) <= 9
    with pytest.raises(ValueError, match="unknown nerve demo style 'plain'"):
        make_demo("nerve", tmp_path / "other", style="plain")
