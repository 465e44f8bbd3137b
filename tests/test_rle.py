import csv

import numpy as np
import pytest

from monai_seg.data import read_train_masks_csv, rle_decode, rle_encode, write_submission

# (H, W) = (3, 4); column-major pixel numbers (1-indexed):
#   1 4 7 10
#   2 5 8 11
#   3 6 9 12
MASK = np.array([[0, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 1]], dtype=np.uint8)

KNOWN = [
    (MASK, "3 3 11 2"),  # row-major order would give "2 1 6 1 8 2 12 1"
    (np.zeros((3, 4)), ""),
    (np.ones((3, 4)), "1 12"),
    (np.eye(3, 4), "1 1 5 1 9 1"),
    (np.pad([[1]], ((0, 2), (0, 3))), "1 1"),  # first pixel: starts are 1-indexed
    (np.pad([[1]], ((2, 0), (3, 0))), "12 1"),  # last pixel
    (np.pad([[1]], ((0, 2), (1, 2))), "4 1"),  # top of the second column
]

MALFORMED = [
    ("1 2 3", "odd number of values"),
    ("1 x", r"value 2 \('x'\) is not an integer"),
    ("1.5 2", "not an integer"),
    ("0 3", "run 1 .* starts before pixel 1"),
    ("-2 3", "starts before pixel 1"),
    ("1 0", "run 1 .* is empty"),
    ("2 -1", "is empty"),
    ("11 3", r"run 1 .* runs past the end of the 3x4 image \(12 pixels\)"),
    ("1 1 12 2", "run 2 .* runs past the end"),
    ("5 2 1 2", "run 2 .* starts before the end of the previous run"),
    ("1 5 3 2", "run 2 .* starts before the end of the previous run"),
]


@pytest.mark.parametrize("mask, rle", KNOWN)
def test_known_vectors(mask, rle):
    assert rle_encode(mask) == rle
    decoded = rle_decode(rle, (3, 4))
    assert decoded.dtype == np.uint8 and decoded.shape == (3, 4) and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, np.asarray(mask) > 0)


def test_encode_0_255_and_bool_masks():
    assert rle_encode(MASK * 255) == rle_encode(MASK.astype(bool)) == "3 3 11 2"


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (13, 17), (420, 580)])
def test_round_trip_random(shape):
    rng = np.random.default_rng(0)
    for density in (0.0, 0.05, 0.5, 0.95, 1.0):
        mask = (rng.random(shape) < density).astype(np.uint8)
        rle = rle_encode(mask)
        np.testing.assert_array_equal(rle_decode(rle, shape), mask)
        assert rle_encode(rle_decode(rle, shape)) == rle


def test_touching_runs_are_accepted():
    np.testing.assert_array_equal(rle_decode("1 2 3 2", (3, 4)), rle_decode("1 4", (3, 4)))


def test_encode_rejects_non_2d():
    with pytest.raises(ValueError, match="2D"):
        rle_encode(np.zeros((2, 3, 4)))


@pytest.mark.parametrize("rle, message", MALFORMED)
def test_malformed_rle(rle, message):
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, (3, 4))


def test_write_submission_sorted(tmp_path):
    path = tmp_path / "submission.csv"
    assert write_submission({"10": "1 2", 2: "", 1: "5 3"}, path) == str(path)
    assert path.read_text() == "img,pixels\n1,5 3\n2,\n10,1 2\n"
    write_submission([(3, ""), ("1", "7 1")], path)
    with open(path, newline="") as f:
        assert list(csv.DictReader(f)) == [{"img": "1", "pixels": "7 1"}, {"img": "3", "pixels": ""}]


@pytest.mark.parametrize("rows, message", [([(1, ""), ("1", "")], "appears more than once"), ({"a": ""}, "'a'")])
def test_write_submission_errors(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        write_submission(rows, tmp_path / "submission.csv")


def test_read_train_masks_csv(tmp_path):
    path = tmp_path / "train_masks.csv"
    path.write_text("subject,img,pixels\n1,1,3 3 11 2\n1,2,\n10,3,1 12\n")
    masks = read_train_masks_csv(path, shape=(3, 4))
    assert masks == {"1_1": "3 3 11 2", "1_2": "", "10_3": "1 12"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("img,pixels\n1,\n", "header"),
        ("subject,img,pixels\n1,1,\n1,2,1 2 3\n", r"line 3 \(image 1_2\): RLE has an odd number"),
        ("subject,img,pixels\n1,1,13 1\n", r"line 2 \(image 1_1\): RLE run 1 .* runs past the end"),
        ("subject,img,pixels\n1,1,\n1,1,\n", "line 3: image 1_1 appears more than once"),
        ("subject,img,pixels\n1,x,\n", r"line 2: subject,img \['1', 'x'\] must be integers"),
        ("subject,img,pixels\n1,1\n", "line 2: expected 3 fields"),
    ],
)
def test_read_train_masks_csv_errors(tmp_path, text, message):
    path = tmp_path / "train_masks.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_train_masks_csv(path, shape=(3, 4))
    assert str(path) in str(error.value)
